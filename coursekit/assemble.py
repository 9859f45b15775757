"""Turn a student's submitted file into the list of cells the grader runs.

The grading plan always comes from the instructor notebook: its setup and test cells (with
hidden tests) in its order. From the submission only the *student's own code* is taken: the
solution cells (matched by nbgrader ``grade_id``, or by the functions they define when the
metadata was lost) and code cells the student added. Deleting, editing or reordering test
cells therefore changes nothing.
"""

from __future__ import annotations

import ast
import functools
import json
import symtable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import notebook
from .assignment import Assignment

MAX_BYTES = 20 * 2**20  # a notebook of this course is well under 1 MB without outputs


class SubmissionError(ValueError):
    """The file cannot be graded; the message is a one-line reason for the student."""


@dataclass
class Assembled:
    plan: list[notebook.Cell]
    notes: list[str] = field(default_factory=list)
    skipped: int = 0  # the course's own figure cells left out (see `_skippable`)


def load(path: Path, max_bytes: int = MAX_BYTES):
    """Read a submitted notebook defensively; raise SubmissionError with a one-line reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SubmissionError(f"cannot read the file: {exc.strerror}") from exc
    if size == 0:
        raise SubmissionError("the file is empty")
    if size > max_bytes:
        raise SubmissionError(f"the file is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit "
                              "(clear the outputs and resubmit)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"the file is not UTF-8 text (byte {exc.start}): not a notebook") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        looks_like_python = text.lstrip().startswith(("import", "def", "#", "from"))
        hint = " (it looks like a Python script renamed .ipynb)" if looks_like_python else ""
        raise SubmissionError(f"not a notebook: invalid JSON at line {exc.lineno}{hint}") from exc
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise SubmissionError("not a notebook: JSON without cells")
    try:
        nb = _notebook(data)
    except Exception as exc:
        raise SubmissionError(f"not a readable notebook: {type(exc).__name__}: {str(exc)[:120]}") from exc
    for cell in nb.cells:
        if not isinstance(cell.get("source", ""), str):
            raise SubmissionError("not a readable notebook: a cell's source is not text")
    return nb


def _notebook(data: dict):
    """``nbformat.reads(text, as_version=4)`` of the parsed JSON, without parsing it again or
    checking it against the schema (nbformat only logs what that finds): ~8 ms a submission."""
    major, minor = nbformat.reader.get_version(data)
    if major not in nbformat.versions:
        raise nbformat.NBFormatError(f"unsupported nbformat version {major}")
    return nbformat.convert(nbformat.versions[major].to_notebook_json(data, minor=minor), 4)


@functools.lru_cache(maxsize=4096)  # the course's own cells come again with every submission
def _defined_names(source: str) -> frozenset[str]:
    try:
        tree = ast.parse(notebook.instructor_source(source))
    except SyntaxError:
        return frozenset()
    return frozenset(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


@functools.lru_cache(maxsize=4096)
def _globals(source: str, *, bound: bool) -> frozenset[str] | None:
    """Module-level names a cell binds (``bound``) or reads; None when it does not parse
    (IPython magics are turned into Python first)."""
    code = notebook.instructor_source(source)
    try:
        top = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            top = symtable.symtable(TransformerManager().transform_cell(code), "<cell>", "exec")
        except (SyntaxError, ValueError):
            return None
    names: set[str] = set()
    tables = [top]
    while tables:
        t = tables.pop()
        tables += t.get_children()
        for sym in t.get_symbols():
            if bound:
                binds = sym.is_assigned() or sym.is_imported() or sym.is_namespace()
                if binds and (t is top or sym.is_declared_global()):
                    names.add(sym.get_name())
            elif sym.is_referenced() and (t is top or sym.is_global() or
                                          (t.get_type() == "class" and not sym.is_assigned())):
                names.add(sym.get_name())
    return frozenset(names)


_DYNAMIC = {"globals", "locals", "vars", "eval", "exec", "get_ipython", "__import__", "__builtins__"}


def _skippable(course: set[str], extras: list[str], solutions: list[str]) -> set[str]:
    """The course's own ungraded cells (figures, demos) that grading can leave out.

    A cell of the submission identical to one of the instructor's unlabelled cells is the
    course's, not the student's: its figure is never looked at when grading, and tests may not
    use what it defines (AUTHORING.md). It is left out unless a cell that does run (a solution,
    a cell the student wrote or edited) mentions a name it binds, or it does not parse. When a
    cell that runs cannot be read, or reads names dynamically, every course cell runs.
    """
    theirs = [s for s in extras if s.strip() not in course] + solutions
    used: set[str] = set()
    for src in theirs:
        names = _globals(src, bound=False)
        if names is None or names & _DYNAMIC:
            return set()
        used |= names
    skip = set()
    for src in extras:
        if src.strip() in course:
            bound = _globals(src, bound=True)
            if bound is not None and not bound & used:
                skip.add(src)
    return skip


def assemble(a: Assignment, student_nb) -> Assembled:
    """Build the grading plan for ``student_nb`` against the instructor notebook of ``a``."""
    plan_cells = a.plan
    notes: list[str] = []
    instructor_kind = {c.grade_id: c.kind for c in plan_cells if c.grade_id}
    solution_names = {c.grade_id: _defined_names(c.source) for c in plan_cells if c.kind == "solution"}

    # classify the student's code cells
    student_code = [c for c in student_nb.cells if c.get("cell_type") == "code"]
    matched: dict[str, int] = {}  # solution grade_id -> position in student_code
    anchors: dict[int, str] = {}  # position -> instructor grade_id it stands for
    for pos, cell in enumerate(student_code):
        gid = notebook.nb_meta(cell).get("grade_id")
        if gid in instructor_kind:
            anchors[pos] = gid
            if instructor_kind[gid] == "solution":
                if gid in matched:
                    notes.append(f"two cells carry grade_id {gid!r}; the first one was graded")
                else:
                    matched[gid] = pos
    for gid, names in solution_names.items():  # metadata lost: match by the functions defined
        if gid in matched or not names:
            continue
        for pos, cell in enumerate(student_code):
            if pos in anchors:
                continue
            if names <= _defined_names(cell.source):
                matched[gid] = pos
                anchors[pos] = gid
                notes.append(f"solution cell {gid!r} had lost its nbgrader metadata; matched by "
                             f"{', '.join(sorted(names))}")
                break
        else:
            notes.append(f"solution cell {gid!r} not found in the submission")

    # extra code cells the student wrote, attached after the anchor that precedes them
    extras_after: dict[str | None, list[str]] = {}
    last_anchor: str | None = None
    for pos, cell in enumerate(student_code):
        if pos in anchors:
            last_anchor = anchors[pos]
            continue
        if notebook.nb_meta(cell):  # a cell with nbgrader metadata we do not know: ignored
            gid = notebook.nb_meta(cell).get("grade_id")
            if gid and notebook.nb_meta(cell).get("solution"):
                notes.append(f"unknown solution cell {gid!r} (renamed grade_id?) was run as an extra cell")
                extras_after.setdefault(last_anchor, []).append(cell.source)
            continue
        if cell.source.strip():
            extras_after.setdefault(last_anchor, []).append(cell.source)

    skip = _skippable(a.course_code,
                      [src for srcs in extras_after.values() for src in srcs],
                      [student_code[pos].source for pos in matched.values()])
    extras_after = {k: [s for s in v if s not in skip] for k, v in extras_after.items()}

    plan: list[notebook.Cell] = []
    index = 0

    def emit(kind, source, gid=None, points=0.0):
        nonlocal index
        plan.append(notebook.Cell(index, kind, source, gid, points))
        index += 1

    first_setup_done = False
    for c in plan_cells:
        if c.kind == "solution":
            src = student_code[matched[c.grade_id]].source if c.grade_id in matched else ""
            emit("solution", src, c.grade_id)
        elif c.kind == "code":
            continue  # the instructor's ungraded cells are replaced by the student's own code cells
        else:
            emit(c.kind, c.source, c.grade_id, c.points)
        if c.kind == "setup" and not first_setup_done:
            first_setup_done = True
            for src in extras_after.pop(None, []):
                emit("code", src)
        for src in extras_after.pop(c.grade_id, []) if c.grade_id else []:
            emit("code", src)
    for srcs in extras_after.values():
        for src in srcs:
            emit("code", src)
    return Assembled(plan, notes, len(skip))
