"""The course gradebook: nbgrader's database (SQLite by default, any SQLAlchemy URL, e.g. a
PostgreSQL server shared by several TAs). Written only by the process that runs a batch, one
submission at a time; a write that collides with another TA's run is retried."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .assignment import Assignment
from .scoring import Graded
from .settings import sqlite_parent


class GradebookBusy(RuntimeError):
    """The gradebook stayed locked or contended for too long."""


@contextlib.contextmanager
def quiet():
    """nbgrader's SQLAlchemy models emit SAWarnings on every query: not for a TA's console."""
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        yield


def _retrying(gb, write, *args, attempts: int = 30):
    """Run ``write(gb, *args)``; on a conflict with another grading process (a row it created
    first, a lock it holds) roll back and try again. Several TAs may write one gradebook."""
    from nbgrader.api import InvalidEntry, MissingEntry
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            with quiet():
                return write(gb, *args)
        except (DBAPIError, InvalidEntry, MissingEntry) as exc:  # nbgrader wraps IntegrityError in InvalidEntry
            gb.db.rollback()
            if attempt == attempts - 1:
                raise GradebookBusy(f"the gradebook stayed busy ({type(exc).__name__}): another grading "
                                    "run holds it; try again when it has finished") from exc
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))


@functools.cache
def alembic_head() -> str:
    """The gradebook schema's version, as nbgrader's ``get_alembic_version`` finds it, but read
    in this process: nbgrader runs `alembic heads` in a new Python process (~2.5 s of CPU,
    while the batch is grading) every time it creates a gradebook."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader import api

    config = Config()
    config.set_main_option("script_location", str(Path(api.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


def open_gradebook(url: str, attempts: int = 20):
    """nbgrader's Gradebook at ``url`` (a SQLite file's folder is created). Two runs that start
    together may both create its tables: the loser of that race retries."""
    from nbgrader import api
    from nbgrader.api import Gradebook, InvalidEntry
    from sqlalchemy.exc import DBAPIError

    api.get_alembic_version = alembic_head

    folder = sqlite_parent(url)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            with quiet():
                return Gradebook(url)
        except (DBAPIError, InvalidEntry) as exc:  # InvalidEntry: another run created the course row first
            if attempt == attempts - 1:
                raise GradebookBusy(f"cannot open the gradebook ({type(getattr(exc, 'orig', exc)).__name__})") from exc
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))


def _sync_assignment(gb, a: Assignment) -> None:
    ps = a.ps
    gb.update_or_create_assignment(ps.id, duedate=ps.due)
    gb.update_or_create_notebook(ps.id, ps.id)
    for c in a.cells:
        if c.kind == "test":
            gb.update_or_create_grade_cell(c.grade_id, ps.id, ps.id, max_score=c.points, cell_type="code")
        elif c.kind == "solution":
            gb.update_or_create_solution_cell(c.grade_id, ps.id, ps.id)


def sync_assignment(gb, a: Assignment) -> None:
    """Make sure the gradebook knows the problem set, its notebook and graded cells."""
    _retrying(gb, _sync_assignment, a)


def _record(gb, g: Graded) -> None:
    from nbgrader.api import BaseCell, Grade, MissingEntry

    gb.update_or_create_student(g.student_id)
    kwargs = {"timestamp": g.timestamp} if g.timestamp else {}
    gb.update_or_create_submission(g.ps_id, g.student_id, **kwargs)
    nb = gb.find_submission_notebook(g.ps_id, g.ps_id, g.student_id)
    grades = dict(gb.db.query(BaseCell.name, Grade).join(Grade, Grade.cell_id == BaseCell.id)
                  .filter(Grade.notebook_id == nb.id))  # one query, not one per cell
    for gid, value in g.scores.items():
        if gid not in grades:
            raise MissingEntry(f"no grade cell {gid!r} of {g.ps_id} for {g.student_id}")
        grades[gid].auto_score = float(value)
    nb.flagged = bool(g.flags or g.error)
    gb.db.commit()


def record(gb, g: Graded) -> None:
    """Write one student's grades (idempotent: a rerun updates the same rows)."""
    _retrying(gb, _record, g)


def _add_students(gb, people: list[dict]) -> None:
    for p in people:
        gb.update_or_create_student(p["student_id"], **{k: p[k] for k in ("first_name", "last_name", "email")
                                                        if p.get(k)})
    gb.db.commit()


def add_students(gb, people: list[dict]) -> None:
    """Put roster students in the gradebook (``student_id`` and optional ``first_name``,
    ``last_name``, ``email``): nbgrader's export and the class CSV list them, submitted or not."""
    _retrying(gb, _add_students, people)


class OverrideError(ValueError):
    """An override names an unknown student or cell, or a score out of range."""


@dataclass
class CellGrade:
    """One graded cell of one submission, as nbgrader stores it."""

    auto: float | None
    manual: float | None  # a TA's override: wins over ``auto`` (nbgrader's Grade.score)
    reason: str | None  # the override's reason (a Comment on the grade cell)

    @property
    def score(self) -> float:
        return float(self.manual if self.manual is not None else (self.auto or 0.0))


@dataclass
class Entry:
    """One student of the gradebook for one problem set (``submitted`` False: no submission)."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    submitted: bool = False
    timestamp: dt.datetime | None = None
    late_penalty: float = 0.0
    cells: dict[str, CellGrade] = field(default_factory=dict)

    @property
    def raw_total(self) -> float:
        return float(sum(c.score for c in self.cells.values()))


def read_class(gb, ps_id: str) -> dict[str, Entry]:
    """Every student of the gradebook with their grades of ``ps_id`` (what nbgrader's export
    reads too: a student without a submission gets an entry with ``submitted`` False). Three
    queries, whatever the size of the class."""
    from nbgrader.api import Assignment as Set
    from nbgrader.api import BaseCell, Comment, Grade, Student
    from nbgrader.api import SubmittedAssignment as Sub
    from nbgrader.api import SubmittedNotebook as SubNb

    with quiet():
        entries = {sid: Entry(sid, first or "", last or "", email or "")
                   for sid, first, last, email in gb.db.query(Student.id, Student.first_name, Student.last_name,
                                                              Student.email)}
        of_set = (gb.db.query(Sub.student_id, Sub.timestamp, SubNb.late_submission_penalty, SubNb.id)
                  .join(Set, Set.id == Sub.assignment_id).filter(Set.name == ps_id)
                  .outerjoin(SubNb, SubNb.assignment_id == Sub.id))
        for sid, timestamp, penalty, _ in of_set:
            e = entries[sid]
            e.submitted, e.timestamp = True, timestamp
            e.late_penalty += float(penalty or 0.0)

        def per_cell(*columns):
            return (gb.db.query(Sub.student_id, BaseCell.name, *columns)
                    .join(Set, Set.id == Sub.assignment_id).filter(Set.name == ps_id)
                    .join(SubNb, SubNb.assignment_id == Sub.id))

        reasons = {(sid, cell): text for sid, cell, text in
                   per_cell(Comment.manual_comment).join(Comment, Comment.notebook_id == SubNb.id)
                   .join(BaseCell, BaseCell.id == Comment.cell_id)
                   .filter(BaseCell.type == "GradeCell", Comment.manual_comment.isnot(None))}
        for sid, cell, auto, manual in (per_cell(Grade.auto_score, Grade.manual_score)
                                        .join(Grade, Grade.notebook_id == SubNb.id)
                                        .join(BaseCell, BaseCell.id == Grade.cell_id)):
            entries[sid].cells[cell] = CellGrade(auto, manual, reasons.get((sid, cell)))
    return entries


def _set_override(gb, a: Assignment, student: str, cell: str, score: float | None, reason: str) -> None:
    from nbgrader.api import Comment

    grade = gb.find_grade(cell, a.id, a.id, student)
    grade.manual_score = score
    grade.needs_manual_grade = False
    nb = grade.notebook
    comment = next((c for c in nb.comments if c.cell_id == grade.cell_id), None)
    if comment is None:
        comment = Comment(cell_id=grade.cell_id, notebook_id=nb.id)
        gb.db.add(comment)
    comment.manual_comment = reason if score is not None else None
    gb.db.commit()


def set_override(gb, a: Assignment, student: str, cell: str, score: float | None, reason: str) -> float:
    """Store a TA's score for one graded cell as nbgrader's ``manual_score`` (``score`` None
    removes it), with ``reason`` as a comment on that cell. Regrading changes only the
    ``auto_score``, so the override stays. Returns the cell's maximum."""
    from nbgrader.api import MissingEntry

    if cell not in a.max_scores:
        raise OverrideError(f"{a.id} has no graded cell {cell!r}; graded cells: {', '.join(a.max_scores)}")
    top = a.max_scores[cell]
    if score is not None and not 0 <= score <= top:
        raise OverrideError(f"score {score:g} is outside [0, {top:g}] for {cell}")
    if score is not None and not reason.strip():
        raise OverrideError("an override needs a REASON (shown to the student in the feedback)")
    with quiet():
        try:
            gb.find_assignment(a.id)
        except MissingEntry:
            raise OverrideError(f"{a.id} has not been graded in this gradebook") from None
        try:
            gb.find_submission(a.id, student)
        except MissingEntry:
            known = sorted(s.student.id for s in gb.assignment_submissions(a.id))
            raise OverrideError(f"no graded submission of {a.id} by {student!r} in this gradebook"
                                f"{'; graded: ' + ', '.join(known[:20]) if known else ''}") from None
    _retrying(gb, _set_override, a, student, cell, score, reason.strip())
    return top


def _apply_late(gb, ps_id: str, penalties: dict[str, float]) -> None:
    for student, points in penalties.items():
        nb = gb.find_submission_notebook(ps_id, ps_id, student)
        if (nb.late_submission_penalty or 0.0) != points:
            nb.late_submission_penalty = points
    gb.db.commit()


def store_late_penalties(gb, ps_id: str, penalties: dict[str, float]) -> None:
    """Student -> points deducted, as nbgrader's ``late_submission_penalty`` (its export
    subtracts it from the raw score, as the class CSV does)."""
    _retrying(gb, _apply_late, ps_id, penalties)


def shown_url(url: str) -> str:
    """A database URL fit for a console or a log: the password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a URL: show nothing of it
        return "<gradebook URL>"
