"""`make validate`: every graded cell passes on the instructor solution and fails on the stub,
through every grading path (this project's grader, plain nbgrader autograde, otter run),
with identical per-cell scores."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import backends, notebook, sync
from .assignment import Assignment
from .manifest import ProblemSet
from .sandbox import Limits

PATHS = ("coursekit", "nbgrader", "otter")


@dataclass
class Report:
    ps: str
    cells: list[notebook.Cell]
    scores: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (who, path) -> scores
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        keys = list(self.scores)
        head = f"{'graded cell':<34}{'pts':>5}  " + "  ".join(f"{w[:5]}/{p[:5]:<5}" for w, p in keys)
        lines = [head, "-" * len(head)]
        for c in self.cells:
            row = f"{c.grade_id[:33]:<34}{c.points:>5g}  "
            row += "  ".join(f"{self.scores[k].get(c.grade_id, float('nan')):>11g}" for k in keys)
            lines.append(row)
        lines.append(f"{'seconds':<39}  " + "  ".join(f"{self.seconds.get(k, 0):>11.1f}" for k in keys))
        return "\n".join(lines)


def instructor_submission(a: Assignment | ProblemSet, release_nb=None, solved: set[str] | None = None):
    """The released notebook with the reference solutions filled in (what a perfect student submits);
    with ``solved``, only those solution cells (by grade_id) are filled in, the rest stay stubs."""
    a = a if isinstance(a, Assignment) else Assignment.of(a)
    nb = copy.deepcopy(release_nb if release_nb is not None else a.release_nb())
    for cell in nb.cells:
        gid = notebook.nb_meta(cell).get("grade_id")
        if gid in a.solutions and (solved is None or gid in solved):
            cell.source = a.solutions[gid]
    return nb


def partial_submission(a: Assignment | ProblemSet, release_nb=None):
    """The first half of the exercises solved, the rest left as released stubs."""
    a = a if isinstance(a, Assignment) else Assignment.of(a)
    nb = release_nb if release_nb is not None else a.release_nb()
    ids = [notebook.nb_meta(c).get("grade_id") for c in nb.cells if notebook.nb_meta(c).get("solution")]
    return instructor_submission(a, nb, solved=set(ids[: max(1, len(ids) // 2)]))


def check_source(ps: ProblemSet) -> list[str]:
    """`make check-source`: the notebook's structure (`notebook.lint`), solution cells == `solutions`
    (`sync`), and the problem set's unit-test and mutant-test files exist (AUTHORING.md)."""
    problems = [f"{ps.id}: {path.relative_to(ps.root)} is missing ({what}; see AUTHORING.md)"
                for path, what in ((ps.unit_tests, "unit tests of the solutions module against independent oracles"),
                                   (ps.mutant_tests, "mutant tests: correct alternatives and plausible bugs"))
                if ps.written and path is not None and not path.is_file()]
    if not ps.source_notebook.is_file():
        return problems + [f"{ps.id}: {ps.source_notebook.relative_to(ps.root)} is missing"]
    a = Assignment.of(ps)
    problems += [f"{ps.id}: {p}" for p in notebook.lint(a.source_nb, ps.points)]
    problems += [f"{ps.id}: {p}" for p in sync.check(a.source_nb, ps.module)]
    return problems


def validate(ps: ProblemSet, paths=PATHS, limits: Limits = Limits(), log=print) -> Report:
    a = Assignment.of(ps)
    report = Report(ps.id, a.tests)
    report.problems += check_source(ps)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        nbg = stack.enter_context(backends.Nbgrader(a, tmp / "course"))  # a fresh release, and nbgrader's gradebook
        release_nb = notebook.read(nbg.release_dir / f"{ps.id}.ipynb")
        subs = {"instructor": tmp / "instructor.ipynb", "stub": tmp / "stub.ipynb"}
        nbformat.write(instructor_submission(a, release_nb), str(subs["instructor"]))
        nbformat.write(release_nb, str(subs["stub"]))
        chosen = {"coursekit": lambda: backends.Coursekit(a, limits), "nbgrader": lambda: nbg,
                  "otter": lambda: backends.Otter(a, limits)}
        graders = {how: stack.enter_context(chosen[how]()) for how in paths}

        def grade_via(who: str, how: str) -> None:
            t0 = time.perf_counter()
            try:
                scores = graders[how].grade(subs[who], who)
                if how == "coursekit" and who == "instructor":
                    for gid, m in graders[how].messages.get(who, {}).items():
                        log(f"  {ps.id} instructor {gid}: {m}")
            except Exception as exc:  # noqa: BLE001 -- report, don't crash the validation
                report.problems.append(f"{ps.id}: {who} through {how} failed: {str(exc)[-1500:]}")
                scores = {}
            report.seconds[(who, how)] = time.perf_counter() - t0
            report.scores[(who, how)] = scores
            log(f"  {ps.id}: {who:<10} via {how:<9} {sum(scores.values()):g}/{ps.points} "
                f"in {report.seconds[(who, how)]:.1f}s")

        # otter runs in a subprocess: overlap it with the other two paths (nbgrader stays in this thread)
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            background = [pool.submit(grade_via, who, "otter") for who in subs if "otter" in paths]
            for who in subs:
                for how in paths:
                    if how != "otter":
                        grade_via(who, how)
            for fut in background:
                fut.result()
        report.scores = {(w, h): report.scores[(w, h)] for w in subs for h in paths}
    for c in a.tests:
        for how in paths:
            full = report.scores.get(("instructor", how), {}).get(c.grade_id)
            stub = report.scores.get(("stub", how), {}).get(c.grade_id)
            if full is None or abs(full - c.points) > 1e-9:
                report.problems.append(f"{ps.id}: {c.grade_id} does not pass on the instructor solution via {how} "
                                       f"({full} of {c.points:g})")
            if stub is None or stub != 0:
                report.problems.append(f"{ps.id}: {c.grade_id} does not fail on the released stub via {how} ({stub})")
        for who in ("instructor", "stub"):
            vals = {how: report.scores.get((who, how), {}).get(c.grade_id) for how in paths}
            if len(set(vals.values())) > 1:
                report.problems.append(f"{ps.id}: {c.grade_id} scores differ between grading paths for the {who}: {vals}")
    return report
