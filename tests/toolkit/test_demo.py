"""The demo class (demo/psNN/) grades as described in coursekit/demo.py."""

import pytest

from coursekit import batch, demo, manifest, reports
from coursekit.assignment import Assignment
from coursekit.settings import Settings


@pytest.mark.slow
@pytest.mark.parametrize("ps", manifest.select(None)[:1], ids=lambda p: p.id)
def test_demo_class_grades_as_expected(ps, tmp_path):
    folder = ps.demo_dir
    assert folder.exists(), "run `.venv/bin/python -m coursekit demo --refresh`"
    a = Assignment.of(ps)
    graded = {g.student_id: g for g in batch.grade_batch(a, folder, Settings(jobs=2, out=tmp_path), progress=False)}
    assert set(graded) == {"alice", "bob", "carol", "dave", "erin"}
    assert graded["alice"].total == ps.points and not graded["alice"].flags
    assert graded["bob"].total == 0
    assert 0 < graded["carol"].total < ps.points
    assert graded["dave"].total <= ps.points
    assert graded["erin"].total == 0 and graded["erin"].flags
    table = reports.summary_table(list(graded.values()), a)
    assert "alice" in table and "FLAGGED" in table
    assert (tmp_path / f"grades_{ps.id}.csv").exists()
    assert (tmp_path / "feedback" / ps.id / "alice" / f"{ps.id}.html").exists()


def test_demo_class_is_in_step_with_the_release():
    import nbformat

    for ps in manifest.select(None):
        made = demo.make_class(ps)
        for student, nb in made.items():
            path = ps.demo_dir / f"{student}.ipynb"
            assert path.exists(), f"{path} missing: run `.venv/bin/python -m coursekit demo --refresh`"
            assert nbformat.read(str(path), as_version=4).cells == nb.cells, f"{path} is stale"
