"""Grade one submission, or a batch of one problem set into the course gradebook.

Submissions are graded in parallel (each in its own pair of grading processes, see `sandbox`)
and written to the gradebook from this process only, one at a time. Each result is also kept
as JSON keyed by the submission's hash and the grader's version: re-running a batch (also
after a kill -9) regrades only what changed.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from . import assemble, collect, gradebook, reports, sandbox
from .assignment import Assignment, Outputs
from .scoring import Graded, score
from .settings import Settings

PACKAGE = Path(__file__).resolve().parent


def grader_key(a: Assignment, limits: sandbox.Limits, package: Path = PACKAGE) -> str:
    """What saved grades depend on: the instructor notebook, every file of the grader, the limits."""
    h = hashlib.sha256()
    h.update(a.source_bytes)
    for path in sorted(package.rglob("*")):  # any change to the grader invalidates saved grades
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    h.update(repr(dataclasses.replace(limits, threads=0)).encode())  # how many workers share the cores: no matter
    return h.hexdigest()[:16]


def save_references(store: Path, keys=None) -> None:
    """Keep the tests' reference values for the next batch; a store that cannot be written costs
    only their recomputation."""
    try:
        sandbox.save_references(store, keys)
    except OSError as exc:
        print(f"note: reference values not stored in {store}: {exc}", file=sys.stderr)


def precompute_references(a: Assignment, limits: sandbox.Limits = sandbox.Limits()) -> tuple[int, float]:
    """Grade the instructor's notebook once and store the reference values its tests compute
    (`make autograder`), all computed anew: every batch then starts with them. Returns (values
    stored, seconds)."""
    from .validate import instructor_submission

    t0 = time.perf_counter()
    sandbox.forget_references()
    sandbox.preload(a.modules)
    built = assemble.assemble(a, instructor_submission(a))
    with sandbox.BOARD.tracking() as used:
        sandbox.run_cells(built.plan, limits=limits)
    save_references(a.ps.autograder_references, used)
    return len(used), time.perf_counter() - t0


def grade_file(a: Assignment, path: Path | None, student_id: str,
               limits: sandbox.Limits = sandbox.Limits()) -> tuple[Graded, list[sandbox.CellResult]]:
    """Grade one submitted file. Never raises for a bad submission: it becomes ``Graded.error``."""
    t0 = time.perf_counter()
    if path is None:
        return Graded.ungraded(a, student_id, "no notebook submitted"), []
    try:
        student_nb = assemble.load(path)
    except assemble.SubmissionError as exc:
        return Graded.ungraded(a, student_id, str(exc), [f"ungradable: {exc}"]), []
    built = assemble.assemble(a, student_nb)
    sandbox.preload(a.modules)
    try:
        results = sandbox.run_cells(built.plan, limits=limits)
    except Exception as exc:  # noqa: BLE001 -- an internal failure must not stop the batch
        return Graded.ungraded(a, student_id, f"grader failure: {type(exc).__name__}: {exc}",
                               [f"grader failure: {type(exc).__name__}"]), []
    s = score(results, a, built.plan)
    return Graded(student_id, a.id, s.scores, dict(a.max_scores), s.messages, s.flags, built.notes + s.notes,
                  seconds=time.perf_counter() - t0, cell_seconds=sum(r.seconds for r in results),
                  student_seconds=sum(r.student_seconds for r in results)), results


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


def _load_saved(path: Path, key: str) -> Graded | None:
    try:
        data = json.loads(path.read_text())
        return Graded(**data) if data.get("key") == key else None
    except (OSError, ValueError, TypeError):
        return None


def _save(path: Path, g: Graded) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(g.to_dict(), indent=1))
    os.replace(tmp, path)


def _largest_first(sub: collect.Submission) -> int:
    """Biggest notebooks start first (a rough proxy for the longest grading), so that the
    batch does not end with one worker grading a long submission while the others idle."""
    try:
        return -sub.path.stat().st_size if sub.path else 0
    except OSError:
        return 0


class NoSuchStudent(ValueError):
    """`make grade STUDENT=id`: the submissions hold nothing of that student."""


def grade_batch(a: Assignment, submissions: Path, settings: Settings = Settings(), *,
                roster: set[str] | list[dict] | None = None, progress: bool = True, use_cache: bool = True,
                name_regexp: str = collect.ZIP_COLLECT_REGEXP, student: str | None = None,
                publish: bool = True) -> list[Graded]:
    """Collect, grade (``settings.workers`` in parallel) and record into the gradebook; then
    (``publish``) write the class's CSV, feedback and summary into ``settings.out_dir`` from
    the gradebook (so a partial batch merges into the class). ``roster``: ids, or rows of
    `reports.read_roster` (added to the gradebook). ``student``: regrade only that student's
    submission (saved result ignored). Returns one ``Graded`` per student of this batch, sorted
    by student id. Never stops on a bad submission."""
    out = Outputs(settings.out_dir, a.id)
    limits = settings.limits
    people = [r for r in roster if isinstance(r, dict)] if roster is not None else []
    ids = {r["student_id"] if isinstance(r, dict) else r for r in roster} if roster is not None else None
    collected = collect.collect(Path(submissions), a.id, out.submitted, roster=ids, name_regexp=name_regexp)
    if student is not None:
        collected.submissions = [s for s in collected.submissions if s.student_id == student]
        if not collected.submissions:
            raise NoSuchStudent(f"no submission of {student!r} in {submissions}")
        use_cache = False
    key = grader_key(a, limits)
    out.saved.mkdir(parents=True, exist_ok=True)
    results: dict[str, Graded] = {}
    bar = Progress(len(collected.submissions)) if progress else None

    def work(sub: collect.Submission) -> tuple[Graded, bool]:
        digest = hashlib.sha256(sub.path.read_bytes()).hexdigest()[:16] if sub.path else "none"
        saved = out.saved_result(sub.student_id)
        full_key = f"{key}-{digest}"
        stamp = sub.timestamp.isoformat(sep=" ") if sub.timestamp else None
        if use_cache and (g := _load_saved(saved, full_key)) is not None:
            if g.timestamp != stamp:  # the same notebook submitted again later: its time counts
                g.timestamp = stamp
                _save(saved, g)
            return g, True
        g, _ = grade_file(a, sub.path, sub.student_id, limits)
        g.key = full_key
        g.notes = sub.notes + g.notes
        g.flags = sub.flags + g.flags
        g.timestamp = stamp
        _save(saved, g)
        return g, False

    store = a.ps.autograder_references  # the tests' reference values: computed once, not per batch
    stored = sandbox.load_references(store)
    with sandbox.BOARD.tracking() as used, sandbox.ahead(settings.workers):
        # grading starts at once; the gradebook opens meanwhile (creating nbgrader's tables takes seconds)
        pool = cf.ThreadPoolExecutor(max_workers=settings.workers)
        try:
            futures = {pool.submit(work, s): s for s in sorted(collected.submissions, key=_largest_first)}
            with gradebook.open_gradebook(settings.gradebook_url) as gb:
                gradebook.sync_assignment(gb, a)
                if people:
                    gradebook.add_students(gb, people)
                for fut in cf.as_completed(futures):
                    sub = futures[fut]
                    try:
                        g, cached = fut.result()
                    except Exception as exc:  # noqa: BLE001 -- keep the batch going
                        g = Graded.ungraded(a, sub.student_id, f"grader failure: {type(exc).__name__}: {exc}",
                                            [f"grader failure: {type(exc).__name__}"])
                        cached = False
                    gradebook.record(gb, g)  # the only writer
                    results[sub.student_id] = g
                    if bar:
                        bar.update(g, cached)
        finally:  # a gradebook that cannot be opened stops the batch: what has not started is cancelled
            pool.shutdown(wait=True, cancel_futures=True)
    if used - stored:
        save_references(store, stored | used)
    graded = [results[k] for k in sorted(results)]
    if collected.rejected:
        reports.remember_not_graded(out, collected.rejected)
    if publish:
        reports.publish(a, out, settings.gradebook_url)
    return graded
