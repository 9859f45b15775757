"""Reading nbgrader markup: instructor, public and stub versions of cells; structural lint."""

import copy

import nbformat

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


# --- AUTHORING.md's test-cell rules, enforced by check-source (notebooks built in memory) ------------

def _nb(test_source: str):
    """A minimal instructor notebook: setup, one solution cell, one 10-point test cell with ``test_source``."""
    v4 = nbformat.v4

    def meta(gid, **kw):
        return {"nbgrader": {"grade": False, "grade_id": gid, "locked": False, "schema_version": 3, "solution": False,
                             "task": False, **kw}}

    cells = [v4.new_code_cell("import numpy as np\nfrom dlt_checks import assert_close", metadata=meta("setup", locked=True)),
             v4.new_code_cell(CELL, metadata=meta("ex1_f", solution=True)),
             v4.new_code_cell(test_source, metadata=meta("ex1_f_values", grade=True, locked=True, points=10))]
    return v4.new_notebook(cells=cells)


GOOD_TEST = ('"""Checks f on 1 and 2."""\nassert_close(f(1), 2)\n'
             '### BEGIN HIDDEN TESTS\nassert_close(f(2), 4)\n### END HIDDEN TESTS')


def _problems(test_source: str) -> list[str]:
    return notebook.lint(_nb(test_source), 10)


def test_a_well_formed_test_cell_passes():
    assert _problems(GOOD_TEST) == []
    # a one-sentence docstring wrapped at the line length is still one summary
    assert _problems('"""Checks f on 1 and 2, a long sentence\nwrapped over two lines."""\nassert_close(f(1), 2)') == []


def test_a_test_cell_with_no_public_part_is_refused():
    src = '"""Checks f."""\n# nothing visible\n### BEGIN HIDDEN TESTS\nassert_close(f(2), 4)\n### END HIDDEN TESTS'
    (p,) = _problems(src)
    assert p.startswith("cell 2 (ex1_f_values): no public part")


def test_a_test_cell_without_a_docstring_first_is_refused():
    (p,) = _problems("assert_close(f(1), 2)\n" + '"""Checks f."""')
    assert p.startswith("cell 2 (ex1_f_values): a test cell must open with a one-line docstring")
    (p,) = _problems('"""Checks f.\n\nA second paragraph."""\nassert_close(f(1), 2)')
    assert "docstring must be one non-empty summary line" in p


def test_a_bare_assert_without_a_message_is_refused_public_or_hidden():
    (p,) = _problems('"""Checks f."""\nassert f(1) == 2\nassert f(0) == 0, "f(0) should be 0"')
    assert p == "cell 2 (ex1_f_values): line 2: bare `assert` without a message (add one, or use dlt_checks)"
    (p,) = _problems(GOOD_TEST.replace("assert_close(f(2), 4)", "assert abs(f(2) - 4) < 1e-9"))
    assert p.startswith("cell 2 (ex1_f_values): line 4: bare `assert`")


def test_print_in_a_test_cell_is_refused():
    (p,) = _problems(GOOD_TEST + "\nprint('checked')")
    assert p == ("cell 2 (ex1_f_values): line 6: print(...) in a test cell "
                 "(say what is wrong in an assertion message)")


def test_check_source_wants_the_unit_and_mutant_test_files(toy_course, tmp_path):
    """A written problem set without tests/solutions/test_<module>.py or tests/mutants/test_psNN_mutants.py."""
    import shutil

    from coursekit import manifest
    from coursekit.validate import check_source

    root = tmp_path / "course"
    shutil.copytree(toy_course.root, root)
    ps = manifest.load(root / "course.toml")[0]
    assert check_source(ps) == []
    ps.mutant_tests.unlink()
    assert check_source(ps) == ["ps00: tests/mutants/test_ps00_mutants.py is missing (mutant tests: correct "
                                "alternatives and plausible bugs; see AUTHORING.md)"]
    ps.unit_tests.unlink()
    assert [p.split(" is missing")[0] for p in check_source(ps)] == ["ps00: tests/solutions/test_ps00_toy.py",
                                                                    "ps00: tests/mutants/test_ps00_mutants.py"]
