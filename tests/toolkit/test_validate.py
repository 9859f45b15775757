"""`make validate` for every written problem set: each graded cell passes on the instructor
solution and fails on the released stub through coursekit, nbgrader and otter, same scores."""

import pytest

from coursekit import manifest
from coursekit.validate import validate


@pytest.mark.slow
@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_stubs_fail_and_solutions_pass_through_coursekit_and_nbgrader(ps):
    report = validate(ps, paths=("coursekit", "nbgrader"), log=lambda *a: None)
    print(report.table())
    assert report.ok, "\n".join(report.problems)


@pytest.mark.slow
@pytest.mark.parametrize("ps_id", ["ps03", "ps07"])
def test_the_otter_zip_gives_the_same_scores(ps_id):
    """The otter zip grades with this project's own grader (coursekit.otter_plugin), so equal scores
    on two real problem sets (and the toy set's otter tests) stand for all; `make validate` runs
    every set through all three paths."""
    report = validate(manifest.select(ps_id)[0], log=lambda *a: None)
    print(report.table())
    assert report.ok, "\n".join(report.problems)


@pytest.mark.slow
def test_validation_catches_a_cell_that_passes_on_the_stub(toy_course, tmp_path):
    """The validator itself must be able to fail: a test cell that does not call student code."""
    import shutil

    import nbformat

    from coursekit import manifest as m

    root = tmp_path / "course"
    shutil.copytree(toy_course.root, root)
    nb = nbformat.read(str(root / "source" / "ps00" / "ps00.ipynb"), as_version=4)
    for c in nb.cells:
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex1_double_shape":
            c.source = '"""Checks nothing about the student."""\nassert_close(np.ones(3), np.ones(3))'
    nbformat.write(nb, str(root / "source" / "ps00" / "ps00.ipynb"))
    ps = m.load(root / "course.toml")[0]
    report = validate(ps, paths=("coursekit", "nbgrader"), log=lambda *a: None)
    assert not report.ok
    assert any("ex1_double_shape does not fail on the released stub" in p for p in report.problems)
