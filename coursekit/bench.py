"""`make bench`: measured figures, written to bench/bench.md and bench/bench.csv.

Per written problem set: wall time and peak memory of the instructor notebook (solutions and
hidden tests, top to bottom, in a fresh Python process), of the released stub, and of grading
one submission with this project's grader (after one untimed grading: the tests' reference
values are computed once, by `make autograder`), split into the submission's own code, the rest
of the cells (setup, and the tests' own work) and the grader's overhead.

Batches of generated submissions (correct, partial, stub) of the cheapest and the heaviest
problem set: plain serial `nbgrader autograde` against this project's grader with 1 and N
workers, in the same run, with the parallel efficiency (1-worker time / (N x N-worker time))
and the floor: the submissions' own code (their cells and every call the tests make into their
functions, timed in the submission's process: passing values between the two grading processes
is the grader's cost, not the student's), measured with 1 worker, divided by N. The 1-worker
batch is the serial baseline: each submission on one thread (`make grade JOBS=1` would give it
every core's BLAS thread, and time on two threads is not the compute a floor divides by N). Each batch starts from the reference values
stored by `make autograder`, as `make grade` does; one more N-worker batch starts without them.
`--class N` grades one synthetic class of N submissions the way `make grade` does (wall, floor,
memory over the batch). Every figure is a median of ``repeats`` runs: the machine is shared. Uses only time.perf_counter and
resource.getrusage.
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

from . import backends, batch, notebook, sandbox
from .assignment import Assignment
from .manifest import CHECKS_SOURCE, HELPER_NAME, Layout, select
from .settings import Settings
from .validate import instructor_submission, partial_submission

BUDGET_INSTRUCTOR, BUDGET_STUB = 60.0, 10.0

_RUNNER = r"""
import json, os, resource, shutil, sys, tempfile, time
t0 = time.perf_counter()
cells = json.load(open(sys.argv[1]))
work = tempfile.mkdtemp()
shutil.copyfile(sys.argv[2], os.path.join(work, sys.argv[3]))
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
        out = subprocess.run([sys.executable, "-c", _RUNNER, f.name, str(CHECKS_SOURCE), HELPER_NAME],
                             capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        data = json.loads(out.stdout.strip().splitlines()[-1])
        data["wall"] = wall
        return data
    finally:
        os.unlink(f.name)


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def warm_up(assignments=()) -> float:
    """Start the grader's fork server (a once-per-batch cost, reported on its own), preloading
    what the measured problem sets import, as `make grade` does for its one set."""
    for a in assignments:
        sandbox.preload(a.modules)
    t0 = time.perf_counter()
    sandbox.run_cells([notebook.Cell(0, "setup", "import numpy")])
    return time.perf_counter() - t0


def per_problem_set(a: Assignment, repeats: int, settings: Settings) -> dict:
    inst = [run_notebook(a.plan) for _ in range(repeats)]
    stub = [run_notebook(a.stub_plan) for _ in range(repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / f"{a.id}.ipynb"
        nbformat.write(instructor_submission(a), str(sub))
        walls, overheads, student, rest, rss = [], [], [], [], []
        batch.grade_file(a, sub, "bench", settings.limits)  # untimed: as in a batch, reference values are known
        for _ in range(repeats):
            t0 = time.perf_counter()
            g, results = batch.grade_file(a, sub, "bench", settings.limits)
            wall = time.perf_counter() - t0
            walls.append(wall)
            overheads.append(wall - g.cell_seconds)
            student.append(g.student_seconds)
            rest.append(g.cell_seconds - g.student_seconds)
            rss.append(max((r.maxrss_kb for r in results), default=0) / 1024)
    return {
        "ps": a.id,
        "instructor_s": _median([r["wall"] for r in inst]),
        "instructor_mb": _median([r["maxrss_mb"] for r in inst]),
        "instructor_failed_cells": max(r["failed"] for r in inst),
        "stub_s": _median([r["wall"] for r in stub]),
        "stub_mb": _median([r["maxrss_mb"] for r in stub]),
        "grade_one_s": _median(walls),
        "grade_one_mb": _median(rss),
        "student_code_s": _median(student),
        "setup_and_tests_s": _median(rest),
        "overhead_s": _median(overheads),
    }


def make_batch(a: Assignment, folder: Path, n: int) -> dict[str, str]:
    """n generated submissions: a third correct, a third partial, the rest stubs."""
    stub = a.release_nb()
    good = instructor_submission(a, stub)
    partial = partial_submission(a, stub)
    kinds = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kind = ("correct", "partial", "stub")[i % 3]
        nb = {"correct": good, "partial": partial, "stub": stub}[kind]
        nbformat.write(nb, str(folder / f"student{i:03d}.ipynb"))
        kinds[f"student{i:03d}"] = kind
    return kinds


def _stored_references(a: Assignment, settings: Settings, log) -> None:
    """The tests' reference values as `make autograder` stores them, computed now if missing."""
    if not sandbox.load_references(a.ps.autograder_references):
        n_refs, secs = batch.precompute_references(a, settings.limits)
        log(f"  {a.id}: {n_refs} reference values computed and stored in {secs:.1f}s (as `make autograder` does)")


def batch_run(a: Assignment, n: int, jobs: int, repeats: int, settings: Settings, log=print) -> dict:
    serial, one, many = "nbgrader serial", "coursekit 1 worker, 1 thread", f"coursekit {jobs} workers"
    cold = f"coursekit {jobs} workers, no stored reference values"
    times = {serial: [], one: [], many: [], cold: []}
    _stored_references(a, settings, log)
    cells_1, student_1 = [], []  # the cells' own run time / the submissions' own code, graded by 1 worker
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_batch(a, tmp / "subs", n)
        subs = sorted((tmp / "subs").glob("*.ipynb"))
        for rep in range(repeats):
            with backends.Nbgrader(a, tmp / f"nbg{rep}") as nbg:
                for s in subs:
                    nbg.submit(s, s.stem)
                t0 = time.perf_counter()
                nbg_scores = {s.stem: nbg.autograde(s.stem) for s in subs}
                times[serial].append(time.perf_counter() - t0)
            for label, j in ((one, 1), (many, jobs), (cold, jobs)):
                out = tmp / f"out{rep}-{label.replace(' ', '_')}"
                # the 1-worker batch is the serial baseline: one thread per submission, not the cores' worth
                run = settings.replace(jobs=j, out=out, db=None, job_threads=1 if j == 1 else settings.job_threads)
                sandbox.forget_references()  # each batch starts from the stored values, as `make grade` does
                store = a.ps.autograder_references
                hidden = store.with_name(store.name + ".aside")
                if label == cold:  # ... or, once, from none: the first batch after a change to the tests
                    os.replace(store, hidden)
                t0 = time.perf_counter()
                try:
                    graded = batch.grade_batch(a, tmp / "subs", run, progress=False, use_cache=False, publish=False)
                finally:
                    if label == cold:
                        os.replace(hidden, store)
                times[label].append(time.perf_counter() - t0)
                scores[label] = {g.student_id: g.scores for g in graded}
                if j == 1:
                    cells_1.append(sum(g.cell_seconds for g in graded))
                    student_1.append(sum(g.student_seconds for g in graded))
            log(f"  {a.id} batch repeat {rep + 1}/{repeats}: "
                + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))
        same = all(scores[k] == nbg_scores for k in scores)
    med = {k: _median(v) for k, v in times.items()}
    floor, cells_floor = _median(student_1) / jobs, _median(cells_1) / jobs
    return {"ps": a.id, "n": n, "jobs": jobs, "median_s": med, "runs": times, "same_scores": same,
            "speedup": med[serial] / med[many], "speedup_1": med[serial] / med[one],
            "efficiency": med[one] / (jobs * med[many]), "floor_s": floor, "vs_floor": med[many] / floor,
            "cells_floor_s": cells_floor, "vs_cells_floor": med[many] / cells_floor,
            "cold_over_stored": med[cold] / med[many]}


def _batch_in_new_grader(conn, ps_id: str, n: int, jobs: int, repeats: int, settings: Settings) -> None:
    (ps,) = select(ps_id)
    a = Assignment.of(ps)
    warm_up([a])
    conn.send(batch_run(a, n, jobs, repeats, settings))


def batch_run_alone(ps_id: str, n: int, jobs: int, repeats: int, settings: Settings) -> dict:
    """`batch_run` in a new grader process, whose fork server preloads only this problem set's
    modules, as `make grade PS=..` starts (a fork server that preloaded every set's modules forks
    bigger processes)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_batch_in_new_grader, args=(send, ps_id, n, jobs, repeats, settings))
    proc.start()
    send.close()
    try:
        return receive.recv()
    except EOFError:
        raise RuntimeError(f"the batch of {ps_id} failed (exit code {proc.exitcode}); see the output above") from None
    finally:
        proc.join()


def _tree_rss_mb(root: int) -> tuple[float, float]:
    """Resident MB of ``root``'s whole process tree, and of its long-lived part (``root`` and
    its direct children, e.g. the grader's fork server), from /proc."""
    parent, rss = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            parent[int(d.name)], rss[int(d.name)] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = {root}, [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        todo += kids
    # the grader and its direct children (the fork server): grading processes are the server's children
    long_lived = sum(rss.get(p, 0) for p in tree if p == root or parent.get(p) == root)
    return sum(rss.get(p, 0) for p in tree) / 2**20, long_lived / 2**20


def class_run(a: Assignment, n: int, settings: Settings, log=print) -> dict:
    """A synthetic class of ``n`` submissions (a third each correct, partial, stub) graded as
    `make grade` grades it. Wall time, the floor (the submissions' own code: their cells and
    every call into their functions, summed, divided by the workers), memory of the whole
    process tree sampled every 0.5 s, and whether grading slows down over the batch."""
    import threading

    jobs = settings.workers
    samples: list[tuple[float, float, float]] = []
    stop = threading.Event()

    def sample():
        t0 = time.perf_counter()
        while not stop.wait(0.5):
            samples.append((time.perf_counter() - t0, *_tree_rss_mb(os.getpid())))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_batch(a, tmp / "subs", n)
        run = settings.replace(out=tmp / "out", db=None)
        _stored_references(a, settings, log)
        log(f"{a.id}: grading a class of {n} with {jobs} workers ...")
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        graded = batch.grade_batch(a, tmp / "subs", run, progress=True, use_cache=False)
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
    graded.sort(key=lambda g: g.student_id)
    student = sum(g.student_seconds for g in graded)
    tenth = max(1, n // 10)
    first, last = graded[:tenth], graded[-tenth:]
    third = max(1, len(samples) // 3)
    return {
        "ps": a.id, "n": n, "jobs": jobs, "wall_s": wall, "floor_s": student / jobs, "vs_floor": wall / (student / jobs),
        "per_submission_s": wall / n, "cells_floor_s": sum(g.cell_seconds for g in graded) / jobs,
        "first_tenth_s": statistics.median(g.seconds for g in first),
        "last_tenth_s": statistics.median(g.seconds for g in last),
        "peak_tree_mb": max((s[1] for s in samples), default=float("nan")),
        "long_lived_mb_first_third": _median([s[2] for s in samples[:third]]),
        "long_lived_mb_last_third": _median([s[2] for s in samples[-third:]]),
        "graded": len(graded),
    }


def class_report(c: dict) -> list[str]:
    return ["", f"## Class of {c['n']} {c['ps']} submissions, {c['jobs']} workers (correct, partial, stub in turn)", "",
            f"Wall {c['wall_s']:.0f} s ({c['per_submission_s']:.2f} s per submission); floor (the submissions' own "
            f"code / {c['jobs']}) {c['floor_s']:.0f} s; measured / floor **{c['vs_floor']:.2f}**; with the course's "
            f"own work (all cells' run time / {c['jobs']}) {c['cells_floor_s']:.0f} s, measured / that "
            f"{c['wall_s'] / c['cells_floor_s']:.2f}.",
            f"Median time to grade one submission: {c['first_tenth_s']:.2f} s in the first tenth of the class, "
            f"{c['last_tenth_s']:.2f} s in the last tenth.",
            f"Memory: peak {c['peak_tree_mb']:.0f} MB for the whole process tree (grader, fork server, grading "
            f"processes); grader + fork server {c['long_lived_mb_first_third']:.0f} MB (median, first third of "
            f"the run) -> {c['long_lived_mb_last_third']:.0f} MB (last third)."]


def main_class(ps_id: str, n: int, settings: Settings | None = None, layout: Layout = Layout(), log=print) -> int:
    """`make bench-class`: one synthetic class; appends its figures to bench/class.md."""
    settings = settings or Settings()
    (ps,) = select(ps_id)
    c = class_run(Assignment.of(ps), n, settings, log)
    layout.bench.mkdir(exist_ok=True)
    md = [f"# Class-scale run ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)", *class_report(c)]
    (layout.bench / f"class_{ps.id}_{n}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def main(spec: str | None = None, repeats: int = 3, batch_size: int = 20, settings: Settings | None = None,
         batch_sets: str | None = None, layout: Layout = Layout(), log=print) -> int:
    settings = settings or Settings()
    jobs = settings.workers
    sets = select(spec)
    layout.bench.mkdir(exist_ok=True)
    chosen_sets = sets + [p for ps_id in (batch_sets or "").replace(",", " ").split() for p in select(ps_id)]
    startup = warm_up([Assignment.of(ps) for ps in chosen_sets])
    log(f"grader fork server started in {startup:.1f}s (once per batch)")
    rows = []
    for ps in sets:
        log(f"{ps.id}: notebook and single-submission timings ({repeats} repeats) ...")
        rows.append(per_problem_set(Assignment.of(ps), repeats, settings))
        log("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}))
    by_cost = sorted(rows, key=lambda r: r["grade_one_s"])
    chosen = batch_sets.replace(",", " ").split() if batch_sets else \
        list(dict.fromkeys([by_cost[0]["ps"], by_cost[-1]["ps"]]))
    role = {by_cost[0]["ps"]: "cheapest", by_cost[-1]["ps"]: "heaviest"}
    batches = []
    for ps_id in chosen:
        (bps,) = select(ps_id)
        log(f"batch of {batch_size} {bps.id} submissions ({repeats} repeats, in a new grader process) ...")
        batches.append(batch_run_alone(bps.id, batch_size, jobs, repeats, settings))

    with (layout.bench / "bench.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow([f"{v:.2f}" if isinstance(v, float) else v for v in r.values()])
        w.writerow([])
        w.writerow(["batch_ps", "n", "jobs", *[f"{k} (s)" for k in batches[0]["median_s"]], "speedup_N",
                    "speedup_1", "efficiency", "floor_s", "measured_over_floor", "cells_floor_s",
                    "measured_over_cells_floor", "same_scores"])
        for b in batches:
            w.writerow([b["ps"], b["n"], b["jobs"], *[f"{v:.1f}" for v in b["median_s"].values()],
                        f"{b['speedup']:.2f}", f"{b['speedup_1']:.2f}", f"{b['efficiency']:.2f}",
                        f"{b['floor_s']:.1f}", f"{b['vs_floor']:.2f}", f"{b['cells_floor_s']:.1f}",
                        f"{b['vs_cells_floor']:.2f}", b["same_scores"]])
    md = [f"# Benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of {repeats})", "",
          "| problem set | instructor notebook s | MB | stub s | MB | grade one s | MB | student code s | "
          "setup + tests s | grader overhead s | budgets |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = r["instructor_s"] < BUDGET_INSTRUCTOR and r["stub_s"] < BUDGET_STUB and r["overhead_s"] <= 2.0
        md.append(f"| {r['ps']} | {r['instructor_s']:.1f} | {r['instructor_mb']:.0f} | {r['stub_s']:.1f} | "
                  f"{r['stub_mb']:.0f} | {r['grade_one_s']:.1f} | {r['grade_one_mb']:.0f} | "
                  f"{r['student_code_s']:.2f} | {r['setup_and_tests_s']:.2f} | {r['overhead_s']:.2f} | "
                  f"{'within' if ok else 'OVER'} |")
    md += ["", f"Budgets: instructor notebook < {BUDGET_INSTRUCTOR:g} s, stub < {BUDGET_STUB:g} s, "
           "grader overhead per submission <= 2 s (grading wall time minus the cells' own run time). "
           "Grading one correct submission (after one untimed grading, as in a batch: the tests' reference() "
           "values are already known) splits into the submission's own code (its cells and every call "
           "the tests make into its functions, timed in its own process), the rest of the cells' run time "
           "(setup cells and the tests' own work) and the grader's overhead.",
           f"Starting the grader's fork server (imports numpy, torch, matplotlib, IPython once per batch): "
           f"{startup:.1f} s."]
    for b in batches:
        many = f"coursekit {b['jobs']} workers"
        md += ["", f"## Batch: {b['n']} {b['ps']} submissions ({role.get(b['ps'], 'chosen')}; correct, partial, stub)",
               "", "| grader | median s | runs |", "|---|---|---|"]
        for k, v in b["median_s"].items():
            md.append(f"| {k} | {v:.1f} | {', '.join(f'{x:.1f}' for x in b['runs'][k])} |")
        md += ["", f"Speedup over serial nbgrader: **{b['speedup']:.2f}x** with {b['jobs']} workers, "
               f"{b['speedup_1']:.2f}x with 1 worker. Parallel efficiency: **{b['efficiency']:.0%}** "
               f"(1-worker time / ({b['jobs']} x {many} time); the 1-worker batch is the serial baseline, one "
               f"thread per submission). Floor (the submissions' own code -- their cells "
               f"and every call into their functions, timed in their own process -- with 1 worker / {b['jobs']}): "
               f"{b['floor_s']:.1f} s; "
               f"measured / floor: **{b['vs_floor']:.2f}**. With the course's own work counted too (setup cells, "
               f"the tests' own computations: all cells' run time / {b['jobs']}): {b['cells_floor_s']:.1f} s, "
               f"measured / that: {b['vs_cells_floor']:.2f}. Same per-cell scores as nbgrader: {b['same_scores']}. "
               f"Every batch starts from the tests' reference values stored by `make autograder` (as `make grade` "
               f"does); the first batch after the tests change computes them itself: "
               f"{b['cold_over_stored']:.2f}x the time."]
    (layout.bench / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0
