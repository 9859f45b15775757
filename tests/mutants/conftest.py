"""Grade variants of a problem set's reference solution: correct alternatives must get full
marks, plausible bugs must lose points. Each variant replaces the source of one or more
solution cells (by grade_id) in the released notebook and is graded by coursekit's grader."""

from __future__ import annotations

import copy

import nbformat
import pytest

from coursekit import batch, manifest, notebook
from coursekit.assignment import Assignment
from coursekit.validate import instructor_submission


def _grade_variant(ps_id: str, replace: dict[str, str], tmp_path):
    """replace: solution-cell grade_id -> full new source of that cell. Returns coursekit.scoring.Graded."""
    a = Assignment.of(manifest.get(ps_id))
    nb = copy.deepcopy(instructor_submission(a))
    known = {notebook.nb_meta(c).get("grade_id") for c in nb.cells}
    missing = set(replace) - known
    assert not missing, f"unknown solution cells {missing}"
    for c in nb.cells:
        gid = notebook.nb_meta(c).get("grade_id")
        if gid in replace:
            c.source = replace[gid]
    path = tmp_path / f"{ps_id}-variant.ipynb"
    nbformat.write(nb, str(path))
    g, _ = batch.grade_file(a, path, "variant")
    return g


def _solution_source(ps_id: str, grade_id: str) -> str:
    """The reference source of one solution cell (markers removed), to derive variants from."""
    return Assignment.of(manifest.get(ps_id)).solutions[grade_id]


@pytest.fixture
def grade_variant(tmp_path):
    return lambda ps_id, replace: _grade_variant(ps_id, replace, tmp_path)


@pytest.fixture
def solution_source():
    return _solution_source
