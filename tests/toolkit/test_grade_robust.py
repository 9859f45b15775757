"""Batch grading survives broken and dishonest submissions (the corpus in tests/corpus.py):
every bad input gets a clear per-student result, no honest grade is lost, no cheat earns points,
nothing outside a submission's own scratch folder changes, and batches resume after kill -9."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import corpus
import pytest

from coursekit import batch as batches
from coursekit import notebook, sandbox
from coursekit.assignment import Assignment
from coursekit.manifest import ROOT
from coursekit.settings import Settings
from coursekit.validate import instructor_submission

pytestmark = pytest.mark.slow
LIMITS = sandbox.Limits(cell_timeout=3.0, grace=2.0, memory_bytes=2 * 2**30, max_restarts=3)


def grade_batch(ps, subs, out, jobs, db_url, limits=LIMITS, **kw):
    settings = Settings(cell_timeout=limits.cell_timeout, grace=limits.grace, memory_gb=limits.memory_bytes / 2**30,
                        jobs=jobs, out=Path(out), db=db_url)
    assert settings.limits.max_restarts == limits.max_restarts
    return batches.grade_batch(Assignment.of(ps), subs, settings, **kw)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(toy_course, tmp_path_factory):
    """Grade the whole corpus plus honest submissions in one batch (2 workers)."""
    import nbformat

    ps = toy_course
    work = tmp_path_factory.mktemp("batch")
    subs, out = work / "subs", work / "out"
    subs.mkdir()
    zip_path = work / "autograder.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    paths = {"gradebook": out / "gradebook.db", "course_file": ps.source_notebook,
             "other_student": out / "submitted" / ps.id / "good" / f"{ps.id}.ipynb", "autograder_zip": zip_path}
    cases = corpus.build(ps, paths)
    stub = notebook.read(ps.release_notebook)
    good = instructor_submission(ps, stub)
    honest = {"good": nbformat.writes(good).encode(), "stub": nbformat.writes(stub).encode()}
    # a partly correct one: first exercise solved only
    partial = nbformat.reads(honest["stub"].decode(), as_version=4)
    for c_good, c in zip(good.cells, partial.cells):
        if notebook.nb_meta(c).get("grade_id") == "ex1_double":
            c.source = c_good.source
    honest["partial"] = nbformat.writes(partial).encode()
    for name, data in honest.items():
        (subs / f"{name}.ipynb").write_bytes(data)
    for name, case in cases.items():
        (subs / f"{name}.ipynb").write_bytes(case.data)
    with open(subs / "huge_file.ipynb", "wb") as f:
        f.truncate(200 * 2**20)
    watched = {**_hashes(ps.root / "source"), **_hashes(ROOT / "solutions"), **_hashes(ROOT / "coursekit")}
    db = f"sqlite:///{paths['gradebook']}"
    t0 = time.perf_counter()
    graded = grade_batch(ps, subs, out, jobs=2, db_url=db, limits=LIMITS, progress=False)
    seconds = time.perf_counter() - t0
    alone = {}
    for name in ("good", "partial", "stub"):
        g, _ = batches.grade_file(Assignment.of(ps), subs / f"{name}.ipynb", name, LIMITS)
        alone[name] = g
    return {"ps": ps, "cases": cases, "graded": {g.student_id: g for g in graded}, "alone": alone, "out": out,
            "db": db, "watched": watched, "seconds": seconds, "subs": subs}


def test_batch_finishes_and_grades_everyone(batch):
    assert set(batch["graded"]) == set(batch["cases"]) | {"good", "partial", "stub"}
    assert batch["seconds"] < 240, f"corpus took {batch['seconds']:.0f}s"


def test_honest_grades_are_kept(batch):
    g = batch["graded"]
    assert g["good"].total == g["good"].max_total == 10
    assert g["stub"].total == 0
    assert g["partial"].scores == batch["alone"]["partial"].scores and 0 < g["partial"].total < 10
    for name in ("good", "partial", "stub"):
        assert not g[name].flags, (name, g[name].flags)


@pytest.mark.parametrize("kind", ["not-a-notebook", "tampered", "runaway", "cheating"])
def test_every_case_is_bounded_and_reported(batch, kind):
    for name, case in batch["cases"].items():
        if case.kind != kind:
            continue
        g = batch["graded"][name]
        if case.twin:
            assert g.scores == batch["graded"][case.twin].scores, f"{name} lost honest points: {g.scores}"
        if case.max_points is not None:
            assert g.total <= case.max_points, f"{name} earned {g.total}"
        if case.flagged:
            assert g.error or g.flags, f"{name} was not reported"
            reason = g.error or g.flags[0]
            assert "\n" not in reason and len(reason) < 300


def test_cheats_are_flagged_and_earn_nothing(batch):
    for name, case in batch["cases"].items():
        if case.kind == "cheating":
            g = batch["graded"][name]
            assert g.total == 0 and g.flags, f"{name}: {g.total} points, flags {g.flags}"


def test_runaway_code_costs_only_its_own_exercise(batch):
    g = batch["graded"]
    for name in ("infinite_loop", "sleep_hours", "os_exit", "kill_own_kernel"):
        # the runaway code sits in exercise 1's cell; exercise 2 keeps its points
        assert g[name].scores["ex2_mean_square_values"] == 4, (name, g[name].scores, g[name].messages)


def test_not_a_notebook_reasons(batch):
    g = batch["graded"]
    assert "empty" in g["empty_file"].error
    assert "invalid JSON" in g["invalid_json"].error
    assert "Python script" in g["python_renamed"].error
    assert "UTF-8" in g["non_utf8"].error
    assert "MB" in g["huge_file"].error


def test_csv_and_feedback_carry_the_reasons_and_no_secrets(batch):
    ps, out = batch["ps"], batch["out"]
    rows = {r["student_id"]: r for r in csv.DictReader((out / f"grades_{ps.id}.csv").open())}
    assert rows["good"]["total"] == "10" and rows["good"]["status"] == "ok"
    assert rows["empty_file"]["status"] == "error" and "empty" in rows["empty_file"]["reason"]
    assert rows["patch_np_allclose"]["status"] == "flagged"
    secrets = Assignment.of(ps).secrets
    assert secrets
    for path in (out / "feedback" / ps.id).rglob("*.html"):
        text = path.read_text()
        assert not [s for s in secrets if s in text], path


def test_course_files_and_other_students_are_untouched(batch):
    ps = batch["ps"]
    now = {**_hashes(ps.root / "source"), **_hashes(ROOT / "solutions"), **_hashes(ROOT / "coursekit")}
    assert now == batch["watched"]
    other = batch["out"] / "submitted" / ps.id / "good" / f"{ps.id}.ipynb"
    assert other.read_bytes() == (batch["subs"] / "good.ipynb").read_bytes()


def test_gradebook_matches_and_rerun_is_identical_without_duplicates(batch):
    from nbgrader.api import Gradebook

    ps = batch["ps"]
    with Gradebook(batch["db"]) as gb:
        before = {s.student.id: s.score for s in gb.assignment_submissions(ps.id)}
    assert before["good"] == 10 and before["stub"] == 0
    again = grade_batch(ps, batch["subs"], batch["out"], jobs=2, db_url=batch["db"], limits=LIMITS,
                              progress=False)
    assert {g.student_id: g.scores for g in again} == {k: v.scores for k, v in batch["graded"].items()}
    with Gradebook(batch["db"]) as gb:
        after = {s.student.id: s.score for s in gb.assignment_submissions(ps.id)}
        assert len(gb.assignment_submissions(ps.id)) == len(batch["graded"])
    assert after == before


def test_lms_zip_problems(toy_course, tmp_path):
    import nbformat

    ps = toy_course
    good = nbformat.writes(instructor_submission(ps, notebook.read(ps.release_notebook))).encode()
    stub = ps.release_notebook.read_bytes()
    zpath = tmp_path / "lms.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../../evil_attempt_2027-01-05-10-00-00_ps00.ipynb", good)
        zf.writestr("ps00_alice_attempt_2027-01-05-10-00-00_ps00.ipynb", stub)
        zf.writestr("ps00_alice_attempt_2027-01-06-10-00-00_ps00.ipynb", good)
        zf.writestr("ps00_mallory_attempt_2027-01-05-10-00-00_ps00.ipynb", good)
        zf.writestr("ps00_bob_attempt_2027-01-20-09-30-00_ps00.ipynb", good)
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id\nalice\nbob\n")
    out = tmp_path / "out"
    graded = {g.student_id: g for g in grade_batch(ps, zpath, out, jobs=2, db_url=f"sqlite:///{out}/gb.db",
                                                           limits=LIMITS, roster={"alice", "bob"}, progress=False)}
    assert not (tmp_path.parent / "evil_attempt_2027-01-05-10-00-00_ps00.ipynb").exists()
    assert "evil" not in graded
    assert graded["alice"].total == 10 and any("2 submissions" in n for n in graded["alice"].notes)
    assert any("not on the roster" in f for f in graded["mallory"].flags)
    rows = {r["student_id"]: r for r in csv.DictReader((out / f"grades_{ps.id}.csv").open())}
    assert rows["bob"]["status"] == "late" and rows["bob"]["total"] == "10"  # the fixture course: no penalty
    assert "late by 8d 9h 31m" in rows["bob"]["notes"]
    assert rows["alice"]["status"] == "ok" and "2 submissions; graded the latest" in rows["alice"]["notes"]


def test_parallel_equals_serial(toy_course, tmp_path):
    import nbformat

    ps = toy_course
    stub = notebook.read(ps.release_notebook)
    good = instructor_submission(ps, stub)
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(6):
        (subs / f"s{i}.ipynb").write_text(nbformat.writes(good if i % 2 else stub))
    (subs / "broken.ipynb").write_text("{")
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        runs[jobs] = {g.student_id: (g.scores, g.error) for g in grade_batch(
            ps, subs, out, jobs=jobs, db_url=f"sqlite:///{out}/gb.db", limits=LIMITS, progress=False)}
    assert runs[1] == runs[2]


def test_kill_9_half_way_then_rerun_finishes_and_keeps_work(toy_course, tmp_path):
    import nbformat

    ps = toy_course
    good = instructor_submission(ps, notebook.read(ps.release_notebook))
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(8):
        (subs / f"s{i}.ipynb").write_text(nbformat.writes(good))
    (subs / "s_slow.ipynb").write_text(nbformat.writes(corpus._in_first_solution(good, "import time\ntime.sleep(6)")))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(corpus.__file__).parent / 'fixtures' / 'course'}"}
    script = (f"from pathlib import Path; from coursekit import manifest, batch; from coursekit.assignment import Assignment; "
              f"from coursekit.settings import Settings; ps = manifest.load(Path({str(ps.root / 'course.toml')!r}))[0]; "
              f"batch.grade_batch(Assignment.of(ps), Path({str(subs)!r}), Settings(cell_timeout=10, grace=2, jobs=1, "
              f"out=Path({str(out)!r}), db='sqlite:///{out}/gb.db'), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    cache = out / "autograded" / ps.id
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.read_text() for p in cache.glob("*.json")}
    assert 3 <= len(kept) < 9
    graded = grade_batch(ps, subs, out, jobs=2, db_url=f"sqlite:///{out}/gb.db",
                         limits=sandbox.Limits(cell_timeout=10, grace=2), progress=False)
    assert len(graded) == 9
    assert all(g.total == 10 for g in graded)
    for name, text in kept.items():  # what was graded before the kill was reused, not redone
        assert (cache / name).read_text() == text
    key = batches.grader_key(Assignment.of(ps), Settings(cell_timeout=10, grace=2, jobs=2).limits)
    assert json.loads(text)["key"].startswith(key)
    shutil.rmtree(out)


def test_a_change_to_any_grader_file_invalidates_saved_grades(toy_course, tmp_path):
    import coursekit

    pkg = tmp_path / "coursekit"
    shutil.copytree(Path(coursekit.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    a = Assignment.of(toy_course)
    (pkg / "notes.txt").write_text("a file that is not Python")
    names = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file())
    assert "notebook.py" in names and "notes.txt" in names
    before = batches.grader_key(a, LIMITS, pkg)
    for name in names:
        original = (pkg / name).read_bytes()
        (pkg / name).write_bytes(original + b"\n# changed\n")
        assert batches.grader_key(a, LIMITS, pkg) != before, name
        (pkg / name).write_bytes(original)
    assert batches.grader_key(a, LIMITS, pkg) == before
    assert batches.grader_key(a, sandbox.Limits(cell_timeout=4.0), pkg) != before  # the limits count too


def test_a_batch_starts_from_the_reference_values_stored_by_make_autograder(tmp_path):
    """`make autograder` (precompute_references) stores the values the hidden tests compute with
    reference(); `make grade` reads them instead of recomputing (a planted value shows it), and
    stores what it computed itself when nothing was stored."""
    import nbformat

    from coursekit import manifest, release

    root = tmp_path / "course"
    shutil.copytree(ROOT / "tests" / "fixtures" / "course", root, dirs_exist_ok=True)
    ps = manifest.load(root / "course.toml")[0]
    src = nbformat.read(str(ps.source_notebook), as_version=4)
    for c in src.cells:
        if notebook.nb_meta(c).get("grade_id") == "ex2_mean_square_values":
            c.source = c.source.replace("### END HIDDEN TESTS", "from dlt_checks import reference\n"
                                        "assert_close(mean_square(np.array([3.0])), reference(float, 9), name='ms')\n"
                                        "### END HIDDEN TESTS")
    nbformat.write(src, str(ps.source_notebook))
    release.build(ps)
    a = Assignment.of(ps)
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(instructor_submission(ps, notebook.read(ps.release_notebook)), str(subs / "good.ipynb"))

    def cell_score():
        sandbox.forget_references()
        (g,) = grade_batch(ps, subs, tmp_path / "out", jobs=1, db_url=None, progress=False, use_cache=False,
                           publish=False)
        return g.scores["ex2_mean_square_values"]

    store = ps.autograder_references
    assert not store.exists()
    assert cell_score() > 0 and store.exists()  # nothing stored: computed, then stored
    n, _ = batches.precompute_references(a, LIMITS)
    data = pickle.loads(store.read_bytes())
    assert n == 1 and len(data["values"]) == 1
    (key,) = data["values"]
    store.write_bytes(pickle.dumps(dict(data, values={key: pickle.dumps(10.0)})))
    assert cell_score() == 0  # the stored value was used, not recomputed
    batches.precompute_references(a, LIMITS)
    assert cell_score() > 0
