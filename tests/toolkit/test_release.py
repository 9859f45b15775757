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


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_release_says_how_to_work_and_figures_skip_unfinished_exercises(ps):
    """The how-to cell sits before the setup cell; every unlabelled code cell that calls a student function
    runs under `with figure(...)`, imported by the setup cell."""
    import ast

    nb = notebook.read(ps.release_notebook)
    setup = next(i for i, c in enumerate(nb.cells) if notebook.nb_meta(c).get("grade_id") == "setup")
    assert nb.cells[setup - 1].cell_type == "markdown" and "## How to work on this notebook" in nb.cells[setup - 1].source
    assert f"python dlt_checks.py {ps.id}.ipynb" in nb.cells[setup - 1].source
    assert "figure" in nb.cells[setup].source.split("from dlt_checks import", 1)[1].splitlines()[0]
    student = set()
    for c in nb.cells:
        if notebook.nb_meta(c).get("solution"):
            student |= {n.name for n in ast.parse(c.source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and not notebook.nb_meta(c):
            tree = ast.parse(c.source)
            if {x.id for x in ast.walk(tree) if isinstance(x, ast.Name)} & student:
                last = tree.body[-1]
                assert len(tree.body) == 1 and isinstance(last, ast.With) and last.items[0].context_expr.func.id == "figure", \
                    f"{ps.id} cell {i} calls a student function outside `with figure(...)`"
