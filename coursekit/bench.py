"""`make bench`: measured figures, written to bench/bench.md and bench/bench.csv.

Per written problem set: wall time and peak memory of the instructor notebook (solutions and
hidden tests, top to bottom, in a fresh Python process), of the released stub, and of grading
one submission with this project's grader (with its overhead beyond the notebook's own compute).
For one problem set, a generated batch (correct, partial, stub): plain serial `nbgrader
autograde` against this project's grader with 1 and N workers, in the same run; the speedup
is a ratio of medians. Every figure is the median of ``repeats`` runs: the machine is shared.
Uses only time.perf_counter and resource.getrusage.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import grade, notebook, sandbox
from .manifest import ROOT, select
from .nbg import ScratchCourse
from .validate import instructor_submission, partial_submission

BENCH = ROOT / "bench"
BUDGET_INSTRUCTOR, BUDGET_STUB = 60.0, 10.0

_RUNNER = r"""
import json, os, resource, shutil, sys, tempfile, time
t0 = time.perf_counter()
cells = json.load(open(sys.argv[1]))
work = tempfile.mkdtemp()
shutil.copyfile(sys.argv[2], os.path.join(work, "dlt_checks.py"))
os.chdir(work); sys.path.insert(0, work)
os.environ["MPLBACKEND"] = "Agg"
ns = {"__name__": "__main__"}
failed = 0
for src in cells:
    try:
        exec(compile(src, "<cell>", "exec"), ns)
    except BaseException:
        failed += 1
print(json.dumps({"seconds": time.perf_counter() - t0, "failed": failed,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_notebook(cells: list[notebook.Cell]) -> dict:
    """Run cells top to bottom in a fresh interpreter (imports included); seconds, peak MB, failures."""
    from IPython.core.inputtransformer2 import TransformerManager

    tm = TransformerManager()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([tm.transform_cell(c.source) for c in cells], f)
    try:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _RUNNER, f.name, str(sandbox.CHECKS_SOURCE)],
                             capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        data = json.loads(out.stdout.strip().splitlines()[-1])
        data["wall"] = wall
        return data
    finally:
        os.unlink(f.name)


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def warm_up() -> float:
    """Start the grader's fork server (a once-per-batch cost, reported on its own)."""
    t0 = time.perf_counter()
    sandbox.run_cells([notebook.Cell(0, "setup", "import numpy")])
    return time.perf_counter() - t0


def per_problem_set(ps, repeats: int) -> dict:
    source = notebook.read(ps.source_notebook)
    inst = [run_notebook(notebook.grading_plan(source)) for _ in range(repeats)]
    stub = [run_notebook(notebook.stub_plan(source)) for _ in range(repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / f"{ps.id}.ipynb"
        nbformat.write(instructor_submission(ps), str(sub))
        grades, overheads, rss = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            g, results = grade.grade_file(ps, source, sub, "bench")
            wall = time.perf_counter() - t0
            grades.append(wall)
            overheads.append(wall - sum(r.seconds for r in results))
            rss.append(max((r.maxrss_kb for r in results), default=0) / 1024)
    return {
        "ps": ps.id,
        "instructor_s": _median([r["wall"] for r in inst]),
        "instructor_mb": _median([r["maxrss_mb"] for r in inst]),
        "instructor_failed_cells": max(r["failed"] for r in inst),
        "stub_s": _median([r["wall"] for r in stub]),
        "stub_mb": _median([r["maxrss_mb"] for r in stub]),
        "grade_one_s": _median(grades),
        "grade_one_mb": _median(rss),
        "overhead_s": _median(overheads),
    }


def make_batch(ps, folder: Path, n: int) -> dict[str, str]:
    """n generated submissions: a third correct, a third partial, the rest stubs."""
    stub = notebook.read(ps.release_notebook)
    good = instructor_submission(ps, stub)
    partial = partial_submission(ps, stub)
    kinds = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kind = ("correct", "partial", "stub")[i % 3]
        nb = {"correct": good, "partial": partial, "stub": stub}[kind]
        nbformat.write(nb, str(folder / f"student{i:03d}.ipynb"))
        kinds[f"student{i:03d}"] = kind
    return kinds


def batch(ps, n: int, jobs: int, repeats: int, log=print) -> dict:
    times = {"nbgrader serial": [], "coursekit 1 worker": [], f"coursekit {jobs} workers": []}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_batch(ps, tmp / "subs", n)
        subs = sorted((tmp / "subs").glob("*.ipynb"))
        for rep in range(repeats):
            course = ScratchCourse(ps, tmp / f"nbg{rep}")
            course.generate()
            for s in subs:
                course.submit(s.stem, s)
            t0 = time.perf_counter()
            nbg_scores = {s.stem: course.autograde(s.stem) for s in subs}
            times["nbgrader serial"].append(time.perf_counter() - t0)
            course.close()
            for label, j in (("coursekit 1 worker", 1), (f"coursekit {jobs} workers", jobs)):
                out = tmp / f"out{rep}-{j}"
                t0 = time.perf_counter()
                graded = grade.grade_batch(ps, tmp / "subs", out, jobs=j, db_url=f"sqlite:///{out}/gb.db",
                                           progress=False, use_cache=False)
                times[label].append(time.perf_counter() - t0)
                scores[label] = {g.student_id: g.scores for g in graded}
            log(f"  batch repeat {rep + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))
        same = all(scores[k] == nbg_scores for k in scores)
    med = {k: _median(v) for k, v in times.items()}
    return {"n": n, "jobs": jobs, "median_s": med, "runs": times, "same_scores": same,
            "speedup": med["nbgrader serial"] / med[f"coursekit {jobs} workers"],
            "speedup_1": med["nbgrader serial"] / med["coursekit 1 worker"]}


def main(spec: str | None = None, repeats: int = 3, batch_size: int = 20, jobs: int | None = None,
         batch_ps: str | None = None, log=print) -> int:
    jobs = jobs or os.cpu_count() or 1
    sets = select(spec)
    BENCH.mkdir(exist_ok=True)
    startup = warm_up()
    log(f"grader fork server started in {startup:.1f}s (once per batch)")
    rows = []
    for ps in sets:
        log(f"{ps.id}: notebook and single-submission timings ({repeats} repeats) ...")
        rows.append(per_problem_set(ps, repeats))
        log("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}))
    cheapest = min(rows, key=lambda r: r["grade_one_s"])["ps"] if not batch_ps else batch_ps
    (bps,) = select(cheapest)
    log(f"batch of {batch_size} {bps.id} submissions ({repeats} repeats) ...")
    b = batch(bps, batch_size, jobs, repeats, log)

    with (BENCH / "bench.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow([f"{v:.2f}" if isinstance(v, float) else v for v in r.values()])
        w.writerow([])
        w.writerow(["batch_ps", "n", "jobs", *[f"{k} (s)" for k in b["median_s"]], "speedup_N", "speedup_1",
                    "same_scores"])
        w.writerow([bps.id, b["n"], b["jobs"], *[f"{v:.1f}" for v in b["median_s"].values()],
                    f"{b['speedup']:.2f}", f"{b['speedup_1']:.2f}", b["same_scores"]])
    md = [f"# Benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of {repeats})", "",
          "| problem set | instructor notebook s | MB | stub s | MB | grade one s | MB | grader overhead s | budgets |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = r["instructor_s"] < BUDGET_INSTRUCTOR and r["stub_s"] < BUDGET_STUB and r["overhead_s"] <= 2.0
        md.append(f"| {r['ps']} | {r['instructor_s']:.1f} | {r['instructor_mb']:.0f} | {r['stub_s']:.1f} | "
                  f"{r['stub_mb']:.0f} | {r['grade_one_s']:.1f} | {r['grade_one_mb']:.0f} | {r['overhead_s']:.2f} | "
                  f"{'within' if ok else 'OVER'} |")
    md += ["", f"Budgets: instructor notebook < {BUDGET_INSTRUCTOR:g} s, stub < {BUDGET_STUB:g} s, "
           "grader overhead per submission <= 2 s (grading wall time minus the cells' own run time).",
           f"Starting the grader's fork server (imports numpy, torch, matplotlib, IPython once per batch): "
           f"{startup:.1f} s.", "",
           f"## Batch: {b['n']} {bps.id} submissions (correct, partial, stub)", "",
           "| grader | median s | runs |", "|---|---|---|"]
    for k, v in b["median_s"].items():
        md.append(f"| {k} | {v:.1f} | {', '.join(f'{x:.1f}' for x in b['runs'][k])} |")
    md += ["", f"Speedup over serial nbgrader: **{b['speedup']:.2f}x** with {b['jobs']} workers, "
           f"{b['speedup_1']:.2f}x with 1 worker. Same per-cell scores as nbgrader: {b['same_scores']}."]
    (BENCH / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0
