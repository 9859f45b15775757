"""release/ is committed and must equal a fresh `nbgrader generate_assignment`."""

import pytest

from coursekit import manifest, notebook, release


@pytest.mark.slow
@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_release_is_up_to_date(ps):
    assert release.check(ps) == []


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_release_has_stubs_and_the_helper(ps):
    nb = notebook.read(ps.release_notebook)
    assert (ps.release_dir / "dlt_checks.py").read_bytes() == (manifest.ROOT / "coursekit" / "checks.py").read_bytes()
    sols = [c for c in nb.cells if notebook.nb_meta(c).get("solution")]
    assert sols and all("raise NotImplementedError()" in c.source for c in sols)
