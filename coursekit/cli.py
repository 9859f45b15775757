"""Command line of the course toolkit; the Makefile's targets call these subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import manifest


def _sets(spec: str | None):
    if not spec:
        planned = [p.id for p in manifest.load() if not p.written]
        if planned:
            print(f"not written yet (listed in course.toml, skipped): {', '.join(planned)}", file=sys.stderr)
    return manifest.select(spec or None, written_only=True)


def cmd_list(args) -> int:
    for ps in manifest.load():
        mark = "written" if ps.written else "planned (not written yet)"
        print(f"{ps.id}  {ps.title:<50} release {ps.release}  due {ps.due:%Y-%m-%d %H:%M}  "
              f"{ps.points} pts  {mark}")
    return 0


def cmd_check_source(args) -> int:
    from .validate import check_source

    bad = 0
    for ps in _sets(args.ps):
        problems = check_source(ps)
        for p in problems:
            print(p)
        print(f"{ps.id}: source {'OK' if not problems else f'{len(problems)} problem(s)'}")
        bad += bool(problems)
    return 1 if bad else 0


def cmd_release(args) -> int:
    from . import release

    for ps in _sets(args.ps):
        t0 = time.perf_counter()
        dest = release.build(ps)
        print(f"{ps.id}: released to {dest.relative_to(manifest.ROOT)} ({time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_check_release(args) -> int:
    from . import release

    problems = []
    for ps in _sets(args.ps):
        problems += release.check(ps)
    for p in problems:
        print(p)
    print("release/ is up to date" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


def cmd_autograder(args) -> int:
    from . import autograder

    for ps in _sets(args.ps):
        z = autograder.build(ps, _limits(args))
        print(f"{ps.id}: {len(list((z.parent / 'tests').glob('*.py')))} otter tests, {z.relative_to(manifest.ROOT)}")
    return 0


def cmd_try(args) -> int:
    """Quick check for authors: instructor solution and stub through this project's grader only."""
    from .validate import validate

    bad = 0
    for ps in _sets(args.ps):
        rep = validate(ps, paths=("coursekit",))
        print(rep.table())
        for p in rep.problems:
            print("PROBLEM:", p)
        bad += not rep.ok
    return 1 if bad else 0


def cmd_validate(args) -> int:
    from .validate import validate

    bad = 0
    for ps in _sets(args.ps):
        print(f"{ps.id}: validating through coursekit, nbgrader and otter ...")
        rep = validate(ps)
        print(rep.table())
        for p in rep.problems:
            print("PROBLEM:", p)
        print(f"{ps.id}: {'VALID' if rep.ok else 'INVALID'}")
        bad += not rep.ok
    return 1 if bad else 0


def _limits(args):
    from .sandbox import Limits

    jobs = getattr(args, "jobs", None) or os.cpu_count() or 1
    return Limits(cell_timeout=args.cell_timeout, memory_bytes=int(args.memory_gb * 2**30),
                  threads=max(1, (os.cpu_count() or 1) // jobs))


def _limit_options(parser) -> None:
    """The limits of grading, the same for `make grade` and the otter zip (`make autograder`)."""
    parser.add_argument("--cell-timeout", type=float, default=float(os.environ.get("CELL_TIMEOUT") or 60))
    parser.add_argument("--memory-gb", type=float, default=float(os.environ.get("MEMORY_GB") or 6))


def _roster(path: str | None):
    if not path:
        return None
    import csv

    with open(path, newline="") as f:
        return {row["student_id"].strip() for row in csv.DictReader(f) if row.get("student_id")}


def cmd_grade(args) -> int:
    from . import grade, notebook

    if not args.ps or "," in args.ps:
        print("make grade needs exactly one problem set: PS=psNN", file=sys.stderr)
        return 2
    (ps,) = _sets(args.ps)
    if not args.submissions or not Path(args.submissions).exists():
        print(f"SUBMISSIONS={args.submissions!r}: no such folder or zip", file=sys.stderr)
        return 2
    out = Path(args.out)
    graded = grade.grade_batch(ps, Path(args.submissions), out, jobs=args.jobs, db_url=args.db,
                               limits=_limits(args), roster=_roster(args.roster), progress=not args.quiet,
                               use_cache=not args.regrade)
    nb = notebook.read(ps.source_notebook)
    print(grade.summary_table(graded, nb))
    print(f"\ngradebook: {grade.shown_url(grade.gradebook_url(args.db))}")
    print(f"grades CSV: {out / f'grades_{ps.id}.csv'}")
    print(f"feedback:   {out / 'feedback' / ps.id}/<student>/{ps.id}.html")
    return 0


def cmd_demo(args) -> int:
    from . import demo

    return demo.main(jobs=args.jobs)


def cmd_bench(args) -> int:
    from . import bench

    return bench.main(args.ps, repeats=args.repeats, batch_size=args.batch, jobs=args.jobs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="coursekit", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("ps", nargs="?", default=os.environ.get("PS") or None,
                        help="problem set id(s), e.g. ps01 or ps01,ps02; default: all written ones")
        sp.set_defaults(fn=fn)
        return sp

    add("list", cmd_list, "the course manifest")
    add("check-source", cmd_check_source, "lint instructor notebooks; solution cells == solutions package")
    add("release", cmd_release, "nbgrader generate_assignment -> release/")
    add("check-release", cmd_check_release, "fail if release/ differs from a fresh release")
    _limit_options(add("autograder", cmd_autograder, "otter tests and Gradescope autograder.zip -> autograder/"))
    add("try", cmd_try, "instructor solution and stub through this project's grader (fast)")
    add("validate", cmd_validate, "stubs fail, solutions pass, identical scores via coursekit, nbgrader, otter")
    g = add("grade", cmd_grade, "grade a folder or LMS zip of submissions")
    g.add_argument("--submissions", default=os.environ.get("SUBMISSIONS"))
    g.add_argument("--out", default=os.environ.get("OUT") or str(manifest.ROOT / "grading"))
    g.add_argument("--db", default=os.environ.get("DB") or None, help="SQLAlchemy URL of the gradebook")
    g.add_argument("--roster", default=os.environ.get("ROSTER") or None, help="CSV with a student_id column")
    g.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS") or 0) or None)
    _limit_options(g)
    g.add_argument("--regrade", action="store_true", help="ignore cached results")
    g.add_argument("--quiet", action="store_true")
    d = sub.add_parser("demo", help="release, build autograders, grade the demo class")
    d.add_argument("--jobs", type=int, default=None)
    d.set_defaults(fn=cmd_demo)
    b = add("bench", cmd_bench, "measure notebooks and grading; writes bench/")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--batch", type=int, default=20)
    b.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except manifest.ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
