"""Feedback names only the cells a student added as theirs; the course's own figure cells are the course's."""

from __future__ import annotations

import nbformat
import pytest

from coursekit import batch, notebook
from coursekit.assignment import Assignment
from coursekit.sandbox import CellResult, Status
from coursekit.scoring import score


def _plan_and_results(a: Assignment, extra: str, error: str):
    """A plan of the instructor's cells with one unlabelled cell ``extra`` after the first solution, which failed."""
    plan, results = [], []
    for c in a.plan:
        if c.kind == "code":
            continue
        plan.append(notebook.Cell(len(plan), c.kind, c.source, c.grade_id, c.points))
        results.append(CellResult(plan[-1].index, c.kind, c.grade_id, c.points, Status.PASSED))
        if c.kind == "solution" and not any(p.kind == "code" for p in plan):
            plan.append(notebook.Cell(len(plan), "code", extra))
            results.append(CellResult(plan[-1].index, "code", None, 0.0, Status.FAILED, error))
    return plan, results


def test_course_cells_are_named_by_their_exercise_and_unfinished_work_is_not_repeated(toy_course):
    a = Assignment.of(toy_course)
    figure_cell = next(c.source for c in a.plan if c.kind == "code")
    plan, results = _plan_and_results(a, figure_cell + "\n", "ValueError: the figure broke")
    assert score(results, a, plan).notes == ["the course's cell after exercise 1 raised ValueError: the figure broke"]
    plan, results = _plan_and_results(a, figure_cell, "NotImplementedError: ")
    assert score(results, a, plan).notes == []  # the unfinished exercise is reported by its tests
    plan, results = _plan_and_results(a, figure_cell.replace("figure cell", "my cell"), "NotImplementedError: ")
    assert score(results, a, plan).notes == ["a cell you added or changed raised NotImplementedError: "]


@pytest.mark.parametrize("added", [None, "raise ValueError('my own cell')"])
def test_graded_partial_submission_attributes_only_added_cells(toy_course, tmp_path, added):
    a = Assignment.of(toy_course)
    nb = notebook.read(toy_course.release_notebook)  # all stubs, the course's figure cell unchanged
    assert any(c.cell_type == "code" and not notebook.nb_meta(c) for c in nb.cells)
    if added:
        nb.cells.append(nbformat.v4.new_code_cell(added))
    path = tmp_path / f"{toy_course.id}.ipynb"
    nbformat.write(nb, str(path))
    graded, _ = batch.grade_file(a, path, "s1")
    assert graded.total == 0 and not graded.error
    mine = [n for n in graded.notes if "you added" in n]
    if added:
        assert mine == ["a cell you added or changed raised ValueError: my own cell"], graded.notes
    else:
        assert mine == [] and not any("raised" in n for n in graded.notes), graded.notes
