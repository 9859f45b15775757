"""Grade a batch of submissions of one problem set into the course gradebook.

Submissions are graded in parallel (each in its own sandboxed child, see `sandbox`), and
written to the nbgrader gradebook from this process only, one at a time, so SQLite never
sees two writers. Each result is also kept as JSON keyed by the submission's hash and the
grader's version: re-running a batch (also after a kill -9) regrades only what changed.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import assemble, collect, feedback, notebook, sandbox
from .manifest import ROOT, ProblemSet


@dataclass
class Graded:
    """The result of grading one student's submission."""

    student_id: str
    ps_id: str
    scores: dict[str, float]
    max_scores: dict[str, float]
    messages: dict[str, str] = field(default_factory=dict)  # grade_id -> why it failed
    flags: list[str] = field(default_factory=list)  # one-line reasons, shown everywhere
    notes: list[str] = field(default_factory=list)  # informational
    error: str | None = None  # the submission could not be graded at all
    seconds: float = 0.0
    key: str = ""
    timestamp: str | None = None

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def max_total(self) -> float:
        return float(sum(self.max_scores.values()))

    def to_dict(self) -> dict:
        return asdict(self)


def grader_key(ps: ProblemSet, limits: sandbox.Limits, package: Path | None = None) -> str:
    """What saved grades depend on: the instructor notebook, every file of the grader, the limits."""
    h = hashlib.sha256()
    h.update(ps.source_notebook.read_bytes())
    here = package or Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")):  # any change to the grader invalidates saved grades
        h.update(path.name.encode() + path.read_bytes())
    h.update(repr(limits).encode())
    return h.hexdigest()[:16]


def score(results: list[sandbox.CellResult], tests: list[notebook.Cell]) -> tuple[dict, dict, list[str], list[str]]:
    """Per-cell scores from cell results: full points for a test cell that ran without error,
    unless the submission tampered with the checks or did something forbidden before it."""
    scores, messages, flags, notes = {}, {}, [], []
    seen_cheat = None  # the first forbidden action outside the tests: every later test gets 0
    for r in results:
        forbidden = [m for sev, m in r.violations if sev == "forbidden"]
        notes += [f"blocked: {m}" for sev, m in r.violations if sev != "forbidden"]
        where = r.grade_id or "an added cell"
        if r.kind != "test":
            if forbidden:
                seen_cheat = seen_cheat or forbidden[0]
                flags.append(f"suspicious: {forbidden[0]} (in {where}); later exercises get 0")
            if r.status in ("timeout", "crashed"):
                flags.append(f"runaway code in {where}: {r.status}")
            elif r.status == "error" and r.kind in ("solution", "code"):
                notes.append(f"{r.grade_id or 'a cell you added'} raised {(r.error or '').splitlines()[0][:200]}")
            continue
        gid = r.grade_id
        scores[gid] = 0.0
        if r.tampered:
            messages[gid] = "0 points: the checks were tampered with (" + "; ".join(r.tampered[:3]) + ")"
            flags.append(f"tampering in {gid}: {r.tampered[0]}")
        elif forbidden:
            messages[gid] = f"0 points: {forbidden[0]}"
            flags.append(f"suspicious: {forbidden[0]} (during {gid})")
        elif seen_cheat:
            messages[gid] = f"0 points: earlier forbidden action ({seen_cheat})"
        elif r.ok:
            scores[gid] = r.points
        else:
            messages[gid] = r.error or r.status
            if "suspicious:" in (r.error or ""):
                flags.append(f"suspicious return value in {gid}: {r.error.split('suspicious:', 1)[1].strip()[:80]}")
            if r.status in ("timeout", "crashed"):
                flags.append(f"runaway code during {gid}: {r.status}")
    for t in tests:
        if t.grade_id not in scores:
            scores[t.grade_id] = 0.0
            messages[t.grade_id] = "not run"
    return scores, messages, list(dict.fromkeys(flags)), list(dict.fromkeys(notes))


def grade_file(ps: ProblemSet, source_nb, path: Path | None, student_id: str,
               limits: sandbox.Limits = sandbox.Limits()) -> tuple[Graded, list[sandbox.CellResult]]:
    """Grade one submitted file. Never raises for a bad submission: it becomes ``Graded.error``."""
    tests = notebook.test_cells(source_nb)
    max_scores = {t.grade_id: t.points for t in tests}
    zero = {t.grade_id: 0.0 for t in tests}
    t0 = time.perf_counter()
    if path is None:
        return Graded(student_id, ps.id, zero, max_scores, error="no notebook submitted"), []
    try:
        student_nb = assemble.load(path)
    except assemble.SubmissionError as exc:
        return Graded(student_id, ps.id, zero, max_scores, error=str(exc), flags=[f"ungradable: {exc}"]), []
    built = assemble.assemble(source_nb, student_nb)
    try:
        results = sandbox.run_cells(built.plan, limits=limits)
    except Exception as exc:  # noqa: BLE001 -- an internal failure must not stop the batch
        return Graded(student_id, ps.id, zero, max_scores, error=f"grader failure: {type(exc).__name__}: {exc}",
                      flags=[f"grader failure: {type(exc).__name__}"]), []
    scores, messages, flags, notes = score(results, tests)
    return Graded(student_id, ps.id, scores, max_scores, messages, flags, built.notes + notes,
                  seconds=time.perf_counter() - t0), results


# --- gradebook --------------------------------------------------------------------------

class GradebookBusy(RuntimeError):
    """The gradebook stayed locked or contended for too long."""


def _retrying(gb, write, *args, attempts: int = 30):
    """Run ``write(gb, *args)``; on a conflict with another grading process (a row it created
    first, a lock it holds) roll back and try again. Several TAs may write one gradebook."""
    import random

    from nbgrader.api import InvalidEntry, MissingEntry
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return write(gb, *args)
        except (DBAPIError, InvalidEntry, MissingEntry) as exc:  # nbgrader wraps IntegrityError in InvalidEntry
            gb.db.rollback()
            if attempt == attempts - 1:
                raise GradebookBusy(f"the gradebook stayed busy ({type(exc).__name__}): another grading "
                                    "run holds it; try again when it has finished") from exc
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))


def open_gradebook(url: str, attempts: int = 20):
    """nbgrader's Gradebook at ``url``. Two runs that start together may both create its tables:
    the loser of that race retries."""
    import random

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return Gradebook(url)
        except DBAPIError as exc:
            if attempt == attempts - 1:
                raise GradebookBusy(f"cannot open the gradebook ({type(exc.orig).__name__})") from exc
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))


def _sync_assignment(gb, ps: ProblemSet, source_nb) -> None:
    gb.update_or_create_assignment(ps.id, duedate=ps.due)
    gb.update_or_create_notebook(ps.id, ps.id)
    for c in notebook.cells(source_nb):
        if c.kind == "test":
            gb.update_or_create_grade_cell(c.grade_id, ps.id, ps.id, max_score=c.points, cell_type="code")
        elif c.kind == "solution":
            gb.update_or_create_solution_cell(c.grade_id, ps.id, ps.id)


def sync_assignment(gb, ps: ProblemSet, source_nb) -> None:
    """Make sure the gradebook knows the problem set, its notebook and graded cells."""
    _retrying(gb, _sync_assignment, ps, source_nb)


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


def gradebook_url(explicit: str | None = None) -> str:
    """The gradebook: ``explicit``, else $DLT_GRADEBOOK, else ``nbgrader_config.py``'s db_url."""
    if explicit:
        return explicit
    if os.environ.get("DLT_GRADEBOOK"):
        return os.environ["DLT_GRADEBOOK"]
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    url = cfg.CourseDirectory.get("db_url") if "CourseDirectory" in cfg else None
    url = url or "sqlite:///grading/gradebook.db"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = ROOT / url[len("sqlite:///"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    return url


def shown_url(url: str) -> str:
    """A database URL fit for a console or a log: the password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a URL: show nothing of it
        return "<gradebook URL>"


# --- the batch --------------------------------------------------------------------------

class Progress:
    """graded/total, failures and time left, on one line (or a line per item off a terminal)."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.t0 = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, g: Graded, cached: bool) -> None:
        self.done += 1
        self.failed += bool(g.error or g.flags)
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / max(1, self.total))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} graded, "
                f"{self.failed} flagged, {elapsed:.0f}s elapsed, ~{left:.0f}s left "
                f"({g.student_id}{' cached' if cached else ''})")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def grade_batch(ps: ProblemSet, submissions: Path, out_dir: Path, *, jobs: int | None = None,
                db_url: str | None = None, limits: sandbox.Limits | None = None, roster: set[str] | None = None,
                progress: bool = True, use_cache: bool = True) -> list[Graded]:
    """Collect, grade (``jobs`` in parallel), record, and write the CSV and feedback.

    Returns one ``Graded`` per student, sorted by student id. Never stops on a bad submission.
    """

    jobs = max(1, jobs or os.cpu_count() or 1)
    limits = limits or sandbox.Limits(threads=max(1, (os.cpu_count() or 1) // jobs))
    source_nb = notebook.read(ps.source_notebook)
    out_dir = Path(out_dir)
    collected = collect.collect(Path(submissions), ps.id, out_dir / "submitted" / ps.id, roster=roster,
                                due=ps.due)
    key = grader_key(ps, limits)
    cache_dir = out_dir / "autograded" / ps.id
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = gradebook_url(db_url)
    results: dict[str, Graded] = {}
    bar = Progress(len(collected.submissions)) if progress else None
    with open_gradebook(url) as gb:
        sync_assignment(gb, ps, source_nb)

        def work(sub: collect.Submission) -> tuple[Graded, bool]:
            digest = hashlib.sha256(sub.path.read_bytes()).hexdigest()[:16] if sub.path else "none"
            cache = cache_dir / f"{sub.student_id}.json"
            full_key = f"{key}-{digest}"
            if use_cache and cache.exists():
                try:
                    data = json.loads(cache.read_text())
                    if data.get("key") == full_key:
                        return Graded(**data), True
                except (ValueError, TypeError):
                    pass
            g, _ = grade_file(ps, source_nb, sub.path, sub.student_id, limits)
            g.key = full_key
            g.notes = sub.notes + g.notes
            g.flags = [n for n in sub.notes if n.startswith(("late", "student id"))] + g.flags
            g.timestamp = sub.timestamp.isoformat(sep=" ") if sub.timestamp else None
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(g.to_dict(), indent=1))
            os.replace(tmp, cache)
            return g, False

        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(work, s): s for s in collected.submissions}
            for fut in cf.as_completed(futures):
                sub = futures[fut]
                try:
                    g, cached = fut.result()
                except Exception as exc:  # noqa: BLE001 -- keep the batch going
                    g = Graded(sub.student_id, ps.id, {t.grade_id: 0.0 for t in notebook.test_cells(source_nb)},
                               {t.grade_id: t.points for t in notebook.test_cells(source_nb)},
                               error=f"grader failure: {type(exc).__name__}: {exc}",
                               flags=[f"grader failure: {type(exc).__name__}"])
                    cached = False
                record(gb, g)  # the only writer
                results[sub.student_id] = g
                if bar:
                    bar.update(g, cached)
    graded = [results[k] for k in sorted(results)]
    write_csv(graded, source_nb, out_dir / f"grades_{ps.id}.csv")
    feedback.write_all(graded, ps, source_nb, out_dir / "feedback" / ps.id)
    for line in collected.rejected:
        print(f"not graded: {line}", file=sys.stderr)
    return graded


def write_csv(graded: list[Graded], source_nb, path: Path) -> None:
    tests = [t.grade_id for t in notebook.test_cells(source_nb)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "total", "max", *tests, "status", "reason"])
        for g in graded:
            status = "error" if g.error else ("flagged" if g.flags else "ok")
            reason = g.error or "; ".join(g.flags)
            w.writerow([g.student_id, f"{g.total:g}", f"{g.max_total:g}", *[f"{g.scores.get(t, 0):g}" for t in tests],
                        status, reason])
    os.replace(tmp, path)


def summary_table(graded: list[Graded], source_nb) -> str:
    tests = [t.grade_id for t in notebook.test_cells(source_nb)]
    short = [f"q{i + 1}" for i in range(len(tests))]
    head = f"{'student':<18}" + "".join(f"{s:>5}" for s in short) + f"{'total':>8}  status"
    lines = [head, "-" * len(head)]
    for g in graded:
        status = "ERROR: " + g.error if g.error else ("FLAGGED: " + g.flags[0] if g.flags else "ok")
        lines.append(f"{g.student_id[:17]:<18}" + "".join(f"{g.scores.get(t, 0):>5g}" for t in tests)
                     + f"{g.total:>5g}/{g.max_total:g}  {status[:90]}")
    legend = ", ".join(f"{s}={t}" for s, t in zip(short, tests))
    return "\n".join(lines) + "\n\n" + legend

