"""The demo class (demo/psNN/) grades as described in coursekit/demo.py."""

import pytest

from coursekit import demo, grade, manifest, notebook


@pytest.mark.slow
@pytest.mark.parametrize("ps", manifest.select(None)[:1], ids=lambda p: p.id)
def test_demo_class_grades_as_expected(ps, tmp_path):
    folder = demo.DEMO / ps.id
    assert folder.exists(), "run `python -m coursekit.demo --refresh`"
    graded = {g.student_id: g for g in grade.grade_batch(ps, folder, tmp_path, jobs=2,
                                                           db_url=f"sqlite:///{tmp_path}/gb.db", progress=False)}
    assert set(graded) == {"alice", "bob", "carol", "dave", "erin"}
    assert graded["alice"].total == ps.points and not graded["alice"].flags
    assert graded["bob"].total == 0
    assert 0 < graded["carol"].total < ps.points
    assert graded["dave"].total <= ps.points
    assert graded["erin"].total == 0 and graded["erin"].flags
    table = grade.summary_table(list(graded.values()), notebook.read(ps.source_notebook))
    assert "alice" in table and "FLAGGED" in table
    assert (tmp_path / f"grades_{ps.id}.csv").exists()
    assert (tmp_path / "feedback" / ps.id / "alice" / f"{ps.id}.html").exists()


def test_demo_class_is_in_step_with_the_release():
    import nbformat

    for ps in manifest.select(None):
        made = demo.make_class(ps)
        for student, nb in made.items():
            path = demo.DEMO / ps.id / f"{student}.ipynb"
            assert path.exists(), f"{path} missing: run `python -m coursekit.demo --refresh`"
            assert nbformat.read(str(path), as_version=4).cells == nb.cells, f"{path} is stale"
