"""The otter autograder applies the same per-cell time limit and memory limit under `otter run`,
and grades each test in place, in the instructor's order, whatever the submission did to its cells."""

import copy
import time

import corpus
import nbformat
import pytest

from coursekit import autograder, notebook, sandbox
from coursekit.assignment import Assignment
from coursekit.validate import instructor_submission

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_zip(toy_course):
    return autograder.build(Assignment.of(toy_course), sandbox.Limits(cell_timeout=3.0, grace=3.0, memory_bytes=2 * 2**30))


def _write(tmp_path, name, nb):
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_runaway_cells_are_stopped_and_the_rest_is_graded(toy_course, toy_zip, tmp_path):
    good = instructor_submission(toy_course)
    for code in ("while True:\n    pass", "blob = bytearray(64 * 2**30)"):
        t0 = time.perf_counter()
        scores = autograder.run(toy_zip, _write(tmp_path, "runaway", corpus._in_first_solution(good, code)),
                                timeout=300)
        assert time.perf_counter() - t0 < 120
        assert scores["ex2_mean_square_values"] == 4, (code, scores)


def test_tests_run_in_place_and_tampering_gains_nothing(toy_course, toy_zip, tmp_path):
    stub = notebook.read(toy_course.release_notebook)
    nb = copy.deepcopy(stub)
    for c in nb.cells:
        if notebook.classify(c) == "test":
            c.source = "assert True"
    assert sum(autograder.run(toy_zip, _write(tmp_path, "edited", nb)).values()) == 0
    good = instructor_submission(toy_course)
    good.cells = list(reversed(good.cells))
    assert sum(autograder.run(toy_zip, _write(tmp_path, "reordered", good)).values()) == 10
