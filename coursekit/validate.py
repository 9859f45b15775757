"""`make validate`: every graded cell passes on the instructor solution and fails on the stub,
through every grading path (this project's grader, plain nbgrader autograde, otter run),
with identical per-cell scores."""

from __future__ import annotations

import concurrent.futures as cf
import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import autograder, grade, notebook, sync
from .manifest import ProblemSet
from .nbg import ScratchCourse

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


def instructor_submission(ps: ProblemSet, release_nb=None, solved: set[str] | None = None):
    """The released notebook with the reference solutions filled in (what a perfect student submits);
    with ``solved``, only those solution cells (by grade_id) are filled in, the rest stay stubs."""
    source = notebook.read(ps.source_notebook)
    sol = {c.grade_id: notebook.instructor_source(c.source) for c in notebook.cells(source) if c.kind == "solution"}
    nb = copy.deepcopy(release_nb if release_nb is not None else notebook.read(ps.release_notebook))
    for cell in nb.cells:
        gid = notebook.nb_meta(cell).get("grade_id")
        if gid in sol and (solved is None or gid in solved):
            cell.source = sol[gid]
    return nb


def partial_submission(ps: ProblemSet, release_nb=None):
    """The first half of the exercises solved, the rest left as released stubs."""
    nb = release_nb if release_nb is not None else notebook.read(ps.release_notebook)
    ids = [notebook.nb_meta(c).get("grade_id") for c in nb.cells if notebook.nb_meta(c).get("solution")]
    return instructor_submission(ps, nb, solved=set(ids[: max(1, len(ids) // 2)]))


def check_source(ps: ProblemSet) -> list[str]:
    nb = notebook.read(ps.source_notebook)
    problems = [f"{ps.id}: {p}" for p in notebook.lint(nb, ps.points)]
    problems += [f"{ps.id}: {p}" for p in sync.check(nb, ps.module)]
    return problems


def validate(ps: ProblemSet, paths=PATHS, log=print) -> Report:
    source = notebook.read(ps.source_notebook)
    tests = notebook.test_cells(source)
    report = Report(ps.id, tests)
    report.problems += check_source(ps)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        course = ScratchCourse(ps, tmp / "course")  # a fresh release, and nbgrader's gradebook
        release_nb = notebook.read(course.generate() / f"{ps.id}.ipynb")
        subs = {"instructor": tmp / "instructor.ipynb", "stub": tmp / "stub.ipynb"}
        nbformat.write(instructor_submission(ps, release_nb), str(subs["instructor"]))
        nbformat.write(release_nb, str(subs["stub"]))
        zip_path = autograder.build(ps) if "otter" in paths else None

        def grade_via(who: str, how: str) -> None:
            path = subs[who]
            t0 = time.perf_counter()
            try:
                if how == "coursekit":
                    g, _ = grade.grade_file(ps, source, path, who)
                    if g.error:
                        raise RuntimeError(g.error)
                    scores = g.scores
                    if who == "instructor" and g.messages:
                        for gid, m in g.messages.items():
                            log(f"  {ps.id} instructor {gid}: {m}")
                elif how == "nbgrader":
                    course.submit(who, path)
                    scores = course.autograde(who)
                else:
                    scores = autograder.run(zip_path, path)
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
        course.close()
    for c in tests:
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
