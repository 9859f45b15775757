"""The grading plan leaves out the course's own figure cells unless something that runs needs them."""

import copy

import nbformat

from coursekit import assemble
from coursekit.assignment import Assignment


def _meta(gid, *, solution=False, grade=False, locked=False, points=0):
    m = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if grade:
        m["points"] = points
    return {"nbgrader": m}


def _instructor():
    cells = [
        nbformat.v4.new_code_cell("import math", metadata=_meta("setup", locked=True)),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata=_meta("ex1", solution=True)),
        nbformat.v4.new_code_cell("assert f(2) == 4, 'f(2)'", metadata=_meta("ex1_t", grade=True, locked=True, points=1)),
        nbformat.v4.new_code_cell("shown = f(3)  # a figure"),
        nbformat.v4.new_code_cell("SCALE = 10\nfor k in range(2):\n    pass"),
        nbformat.v4.new_code_cell("%matplotlib inline"),
    ]
    return nbformat.v4.new_notebook(cells=cells)


def _submission(nb, solution="def f(x):\n    return 2 * x", extra=None, edit=None):
    sub = copy.deepcopy(nb)
    sub.cells[1].source = solution
    if edit:
        sub.cells[edit[0]].source = edit[1]
    if extra:
        sub.cells.append(nbformat.v4.new_code_cell(extra))
    return sub


def _code(built):
    return [c.source for c in built.plan if c.kind == "code"]


def test_unchanged_course_cells_are_left_out():
    nb = _instructor()
    built = assemble.assemble(Assignment(None, nb), _submission(nb))
    assert _code(built) == [] and built.skipped == 3  # a magic is read as the Python IPython runs
    assert [c.kind for c in built.plan] == ["setup", "solution", "test"]


def test_a_course_cell_that_binds_what_a_solution_reads_runs():
    nb = _instructor()
    built = assemble.assemble(Assignment(None, nb), _submission(nb, solution="def f(x):\n    return SCALE * x / 5"))
    assert "SCALE = 10\nfor k in range(2):\n    pass" in _code(built)
    assert "shown = f(3)  # a figure" not in _code(built)
    # a name read only inside a function of the student's own added cell counts too
    built = assemble.assemble(Assignment(None, nb), _submission(nb, extra="def helper():\n    return shown"))
    assert "shown = f(3)  # a figure" in _code(built)


def test_edited_and_added_cells_always_run():
    nb = _instructor()
    built = assemble.assemble(Assignment(None, nb), _submission(nb, edit=(3, "shown = f(4)"), extra="print(f(1))"))
    assert "shown = f(4)" in _code(built) and "print(f(1))" in _code(built)
    assert "SCALE = 10\nfor k in range(2):\n    pass" not in _code(built)


def test_names_read_and_bound():
    src = "def f(x):\n    y = x + W\n    return np.sum(y)\nclass A:\n    z = Q\n    def g(self):\n        return R\n"
    assert assemble._globals(src, bound=False) == {"W", "np", "Q", "R"}
    src = "with figure('a'):\n    g = 1\n    import scipy.stats as st\n    def h():\n        global K\n        K = 2\n"
    assert assemble._globals(src, bound=True) == {"g", "st", "h", "K"}
    assert assemble._globals("%time x = 1", bound=True) == set()  # IPython runs it through a magic
    assert assemble._globals("def f(:\n    pass", bound=True) is None


def test_a_student_cell_read_dynamically_or_unreadable_keeps_every_course_cell():
    nb = _instructor()
    # a magic's code is a string to get_ipython(): read dynamically as well
    for extra in ("print(globals()['shown'])", "x = eval('SCALE')", "def broken(:\n    pass", "%time y = shown + 1"):
        built = assemble.assemble(Assignment(None, nb), _submission(nb, extra=extra))
        assert built.skipped == 0 and "shown = f(3)  # a figure" in _code(built), extra
