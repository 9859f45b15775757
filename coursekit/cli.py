"""Command line of the course toolkit; the Makefile's targets call these subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import manifest
from .collect import ZIP_COLLECT_REGEXP
from .settings import Settings, SettingsError


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
        print(f"{ps.id}: released to {dest} ({time.perf_counter() - t0:.1f}s)")
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


def cmd_new(args) -> int:
    from . import scaffold

    ps = scaffold.new(args.ps, args.title, args.topic)
    rel = lambda f: f.relative_to(ps.root)  # noqa: E731
    print(f"{ps.id}: new problem set {ps.title!r}\n  " + "\n  ".join(str(rel(f)) for f in (
        ps.source_notebook, ps.solution_file, ps.unit_tests, ps.mutant_tests)))
    print(f"  course.toml: {ps.id} written, release {ps.release}, due {ps.due:%Y-%m-%d %H:%M} (placeholders: set them)")
    print(f"next: replace the example exercise (AUTHORING.md), then make check-source try release validate PS={ps.id}")
    return 0


def cmd_publish(args) -> int:
    from . import publish

    week = args.week
    if week is not None and not str(week).strip().isdigit():
        print(f"error: WEEK={week!r}: a week number, e.g. WEEK=3", file=sys.stderr)
        return 2
    return publish.main(week=int(week) if week is not None else None, date=args.date, limits=_settings(args).limits)


def cmd_autograder(args) -> int:
    from . import autograder, batch
    from .assignment import Assignment

    limits = _settings(args).limits
    for ps in _sets(args.ps):
        a = Assignment.of(ps)
        z = autograder.build(a, limits)
        print(f"{ps.id}: {len(list((z.parent / 'tests').glob('*.py')))} otter tests, {z} "
              f"(cell timeout {limits.cell_timeout:g} s, memory {limits.memory_bytes / 2**30:g} GiB)")
        if not ps.release_notebook.exists():
            print(f"{ps.id}: no release yet (make release PS={ps.id}): the reference values of the hidden tests "
                  f"will be computed by the first `make grade` batch", flush=True)
            continue
        n, seconds = batch.precompute_references(a, limits)
        print(f"{ps.id}: {n} reference values of the hidden tests, computed in {seconds:.1f} s -> "
              f"{ps.autograder_references} (for `make grade`; never in the zip)", flush=True)
    return 0


def cmd_try(args) -> int:
    """Quick check for authors: instructor solution and stub through this project's grader only."""
    from .validate import validate

    bad = 0
    for ps in _sets(args.ps):
        rep = validate(ps, paths=("coursekit",), limits=_settings(args).limits)
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
        rep = validate(ps, limits=_settings(args).limits)
        print(rep.table())
        for p in rep.problems:
            print("PROBLEM:", p)
        print(f"{ps.id}: {'VALID' if rep.ok else 'INVALID'}")
        bad += not rep.ok
    return 1 if bad else 0


def _settings(args) -> Settings:
    """Flags over environment over nbgrader_config.py over defaults (see `coursekit.settings`)."""
    return Settings.resolve(cell_timeout=getattr(args, "cell_timeout", None), memory_gb=getattr(args, "memory_gb", None),
                            jobs=getattr(args, "jobs", None), out=getattr(args, "out", None), db=getattr(args, "db", None))


def _setting_options(parser, *names) -> None:
    """The settings of grading, the same for `make grade`, the otter zip, the demo and the bench."""
    helps = {"cell_timeout": ("--cell-timeout", float, "seconds per cell (env CELL_TIMEOUT; default 60)"),
             "memory_gb": ("--memory-gb", float, "memory per submission in GiB (env MEMORY_GB; default 6)"),
             "jobs": ("--jobs", int, "submissions graded at once (env JOBS; default: one per core)"),
             "out": ("--out", str, "output folder of the batch (env OUT; default grading/)"),
             "db": ("--db", str, "SQLAlchemy URL of the gradebook (env DB; default: <OUT>/gradebook.db "
                                 "if OUT is given, else nbgrader_config.py's db_url)")}
    for name in names:
        flag, kind, help_ = helps[name]
        parser.add_argument(flag, type=kind, default=None, help=help_)


def _one_set(args, verb: str):
    if not args.ps or "," in args.ps:
        print(f"make {verb} needs exactly one problem set: PS=psNN", file=sys.stderr)
        return None
    return _sets(args.ps)[0]


def _print_report(report, out, settings) -> None:
    from . import gradebook, reports, summary

    print(reports.summary_table(report.rows, report.a))
    print()
    print(summary.text(report))
    print(f"\ngradebook: {gradebook.shown_url(settings.gradebook_url)}")
    print(f"grades CSV: {out.csv}")
    print(f"feedback:   {out.feedback_pattern}")
    print(f"summary:    {out.summary_html}")


def cmd_grade(args) -> int:
    from . import batch, reports
    from .assignment import Assignment, Outputs

    ps = _one_set(args, "grade")
    if ps is None:
        return 2
    if not args.submissions or not Path(args.submissions).exists():
        print(f"SUBMISSIONS={args.submissions!r}: no such folder or zip", file=sys.stderr)
        return 2
    settings = _settings(args)
    a = Assignment.of(ps)
    roster = reports.read_roster(args.roster) if args.roster else None
    batch.grade_batch(a, Path(args.submissions), settings, roster=roster, progress=not args.quiet,
                      use_cache=not args.regrade, name_regexp=args.name_regexp, student=args.student, publish=False)
    out = Outputs(settings.out_dir, ps.id)
    _print_report(reports.publish(a, out, settings.gradebook_url), out, settings)
    return 0


def cmd_override(args) -> int:
    """A TA's score for one graded cell of one student (nbgrader's manual_score), kept by regrades."""
    from . import gradebook, reports
    from .assignment import Assignment, Outputs

    ps = _one_set(args, "override")
    if ps is None:
        return 2
    missing = [n for n in ("student", "cell", "score") if not getattr(args, n)]
    if missing:
        print("make override needs " + ", ".join(f"{n.upper()}=" for n in missing)
              + " (and REASON=...; SCORE=auto removes an override)", file=sys.stderr)
        return 2
    a = Assignment.of(ps)
    cell = args.cell
    if cell.lower().startswith("q") and cell[1:].isdigit() and 0 < int(cell[1:]) <= len(a.max_scores):
        cell = list(a.max_scores)[int(cell[1:]) - 1]  # the console table's short name
    if args.score.strip().lower() == "auto":
        score = None
    else:
        try:
            score = float(args.score)
        except ValueError:
            print(f"SCORE={args.score!r} is not a number (or 'auto' to remove the override)", file=sys.stderr)
            return 2
    settings = _settings(args)
    with gradebook.open_gradebook(settings.gradebook_url) as gb:
        top = gradebook.set_override(gb, a, args.student, cell, score, args.reason or "")
    out = Outputs(settings.out_dir, ps.id)
    report = reports.publish(a, out, settings.gradebook_url)
    row = next(r for r in report.rows if r.student_id == args.student)
    what = f"{score:g}/{top:g} ({args.reason.strip()})" if score is not None else "the autograder's score again"
    print(f"{ps.id} {args.student} {cell}: {what}; total now {row.total:g}/{row.max_total:g}")
    print(f"grades CSV: {out.csv}")
    print(f"feedback:   {out.feedback_page(args.student)}")
    return 0


def cmd_demo(args) -> int:
    from . import demo

    return demo.main(_settings(args), refresh_class=args.refresh)


def cmd_demo_refresh(args) -> int:
    """Rewrite demo/psNN/ (the five demo students) from the committed release, without grading."""
    from . import demo

    for ps in _sets(args.ps):
        folder = demo.refresh(ps)
        print(f"{ps.id}: demo class rewritten in {folder.relative_to(ps.root)}/ (commit it)")
    return 0


def cmd_bench(args) -> int:
    from . import bench

    if args.class_size:
        if not args.ps or "," in args.ps:
            raise SettingsError("--class needs one problem set: PS=psNN")
        return bench.main_class(args.ps, args.class_size, settings=_settings(args))
    return bench.main(args.ps, repeats=args.repeats, batch_size=args.batch, settings=_settings(args),
                      batch_sets=args.batch_sets)


def _input_errors(args) -> tuple[type[Exception], ...]:
    """The errors of `make grade` and `make override` that a TA's input causes."""
    if args.cmd not in ("grade", "override"):
        return ()
    from .batch import NoSuchStudent
    from .gradebook import GradebookBusy, OverrideError
    from .reports import RosterError

    return NoSuchStudent, GradebookBusy, OverrideError, RosterError


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
    n = sub.add_parser("new", help="scaffold a new problem set (notebook, solutions module, tests, manifest entry)")
    n.add_argument("ps", nargs="?", default=os.environ.get("PS") or None, help="the new id, e.g. ps12")
    n.add_argument("--title", default=os.environ.get("TITLE") or None,
                   help="its title (env TITLE; optional when course.toml lists the id as planned)")
    n.add_argument("--topic", default=os.environ.get("TOPIC") or None,
                   help="module name part: solutions/psNN_<topic>.py (env TOPIC; default: from the title)")
    n.set_defaults(fn=cmd_new)
    pub = sub.add_parser("publish", help="student bundles and Gradescope zips of the sets released by WEEK/DATE -> dist/",
                         description="For every written problem set released by then: refuse it if release/ is stale "
                                     "or validation fails, else write dist/psNN/psNN.zip (student bundle) and "
                                     "dist/psNN/psNN-gradescope-autograder.zip. Exit 1 if one was refused.")
    pub.add_argument("--week", default=os.environ.get("WEEK") or None,
                     help="week n = the n-th release date in course.toml (env WEEK)")
    pub.add_argument("--date", default=os.environ.get("DATE") or None,
                     help="publish what is released on or before YYYY-MM-DD (env DATE)")
    _setting_options(pub, "cell_timeout", "memory_gb")
    pub.set_defaults(fn=cmd_publish)
    add("release", cmd_release, "nbgrader generate_assignment -> release/")
    add("check-release", cmd_check_release, "fail if release/ differs from a fresh release")
    _setting_options(add("autograder", cmd_autograder, "otter tests and Gradescope autograder.zip -> autograder/"),
                     "cell_timeout", "memory_gb")
    _setting_options(add("try", cmd_try, "instructor solution and stub through this project's grader (fast)"),
                     "cell_timeout", "memory_gb")
    _setting_options(add("validate", cmd_validate,
                         "stubs fail, solutions pass, identical scores via coursekit, nbgrader, otter"),
                     "cell_timeout", "memory_gb")
    g = add("grade", cmd_grade, "grade a folder or LMS zip of submissions")
    g.add_argument("--submissions", default=os.environ.get("SUBMISSIONS"))
    g.add_argument("--roster", default=os.environ.get("ROSTER") or None, help="CSV with a student_id column")
    g.add_argument("--name-regexp", default=ZIP_COLLECT_REGEXP,
                   help="regular expression with a student_id group for the file names in an LMS zip "
                        "(default: nbgrader's zip_collect convention)")
    _setting_options(g, "out", "db", "jobs", "cell_timeout", "memory_gb")
    g.add_argument("--regrade", action="store_true", help="ignore saved results")
    g.add_argument("--student", default=os.environ.get("STUDENT") or None,
                   help="regrade only this student's submission (env STUDENT); the CSV keeps the whole class")
    g.add_argument("--quiet", action="store_true")
    o = add("override", cmd_override, "a TA's score for one graded cell (nbgrader's manual score)")
    o.add_argument("--student", default=os.environ.get("STUDENT") or None)
    o.add_argument("--cell", default=os.environ.get("CELL") or None, help="grade id, or q<N> as in the table")
    o.add_argument("--score", default=os.environ.get("SCORE") or None, help="points, or 'auto' to remove")
    o.add_argument("--reason", default=os.environ.get("REASON") or "", help="shown in the CSV and the feedback")
    _setting_options(o, "out", "db")
    d = sub.add_parser("demo", help="release, build autograders, grade the demo class into grading/demo/")
    _setting_options(d, "jobs", "cell_timeout", "memory_gb")
    d.add_argument("--refresh", action="store_true", help="rewrite the demo class from the releases first")
    d.set_defaults(fn=cmd_demo)
    add("demo-refresh", cmd_demo_refresh, "rewrite the demo class demo/psNN/ from release/psNN/ (no grading)")
    b = add("bench", cmd_bench, "measure notebooks and grading; writes bench/")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--batch", type=int, default=20)
    b.add_argument("--batch-sets", default=None, help="problem sets to batch (default: the cheapest and the heaviest)")
    b.add_argument("--class", dest="class_size", type=int, default=0, metavar="N",
                   help="instead: grade a synthetic class of N submissions of PS (wall, floor, memory over the "
                        "batch) -> bench/class_PS_N.md")
    _setting_options(b, "jobs", "cell_timeout", "memory_gb")
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (manifest.ManifestError, SettingsError, *_input_errors(args)) as exc:  # bad input: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
