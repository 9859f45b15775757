"""Reading nbgrader markup: instructor, public and stub versions of cells; structural lint."""

import copy

from coursekit import notebook, sync

CELL = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
TEST = "assert_close(f(1), 2)\n### BEGIN HIDDEN TESTS\nassert_close(f(2), 4)\n### END HIDDEN TESTS\nprint('done')"


def test_three_versions_of_a_cell():
    assert "### " not in notebook.instructor_source(CELL) and "return 2 * x" in notebook.instructor_source(CELL)
    stub = notebook.stub_source(CELL)
    assert "    raise NotImplementedError()" in stub and "return 2 * x" not in stub
    public = notebook.public_source(TEST)
    assert "f(2)" not in public and "f(1)" in public and "print('done')" in public


def test_fixture_is_clean_and_in_sync(toy_course, toy_nb):
    assert notebook.lint(toy_nb, toy_course.points) == []
    assert sync.check(toy_nb, toy_course.module) == []


def test_lint_catches_typical_authoring_mistakes(toy_nb):
    nb = copy.deepcopy(toy_nb)
    tests = [c for c in nb.cells if notebook.classify(c) == "test"]
    tests[0].metadata["nbgrader"]["locked"] = False
    tests[1].metadata["nbgrader"]["grade_id"] = tests[0].metadata["nbgrader"]["grade_id"]
    nb.cells[1].outputs = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    problems = "\n".join(notebook.lint(nb, 10))
    assert "must be locked" in problems and "duplicate grade_id" in problems and "has outputs" in problems


def test_sync_detects_drift_from_the_solutions_module(toy_course, toy_nb):
    nb = copy.deepcopy(toy_nb)
    for c in nb.cells:
        if notebook.nb_meta(c).get("grade_id") == "ex1_double":
            c.source = c.source.replace("return 2 * x", "return x + x")
    problems = sync.check(nb, toy_course.module)
    assert len(problems) == 1 and "`double` differs" in problems[0]
