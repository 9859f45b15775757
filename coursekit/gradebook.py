"""The course gradebook: nbgrader's database (SQLite by default, any SQLAlchemy URL, e.g. a
PostgreSQL server shared by several TAs). Written only by the process that runs a batch, one
submission at a time; a write that collides with another TA's run is retried."""

from __future__ import annotations

import contextlib
import random
import time
import warnings

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


def open_gradebook(url: str, attempts: int = 20):
    """nbgrader's Gradebook at ``url`` (a SQLite file's folder is created). Two runs that start
    together may both create its tables: the loser of that race retries."""
    from nbgrader.api import Gradebook, InvalidEntry
    from sqlalchemy.exc import DBAPIError

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
    gb.update_or_create_student(g.student_id)
    kwargs = {"timestamp": g.timestamp} if g.timestamp else {}
    gb.update_or_create_submission(g.ps_id, g.student_id, **kwargs)
    for gid, value in g.scores.items():
        grade = gb.find_grade(gid, g.ps_id, g.ps_id, g.student_id)
        grade.auto_score = float(value)
    nb = gb.find_submission_notebook(g.ps_id, g.ps_id, g.student_id)
    nb.flagged = bool(g.flags or g.error)
    gb.db.commit()


def record(gb, g: Graded) -> None:
    """Write one student's grades (idempotent: a rerun updates the same rows)."""
    _retrying(gb, _record, g)


def shown_url(url: str) -> str:
    """A database URL fit for a console or a log: the password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a URL: show nothing of it
        return "<gradebook URL>"
