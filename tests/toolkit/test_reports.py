"""What a TA sees after `make grade`: one class CSV read from the gradebook (partial batches
merge, one student can be regraded), overrides that stick, an LMS-ready CSV with the roster and
the late policy, `nbgrader export` agreeing with it, the class summary (page, figures, text), and
a console with progress and results only."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest

from coursekit import batch, cli, manifest, notebook, reports, summary
from coursekit.assignment import Assignment, Outputs
from coursekit.gradebook import OverrideError, open_gradebook, set_override
from coursekit.late import LatePolicy
from coursekit.settings import Settings
from coursekit.validate import instructor_submission, partial_submission

pytestmark = pytest.mark.slow
POLICY = "late_penalty_per_day = 10\nlate_penalty_cap = 50\nlate_grace_minutes = 15\n"
ROSTER = ("student_id,name,email\nalice,Alice Liddell,alice@uni.edu\nbob,Bob Dylan,bob@uni.edu\n"
          "carol,Carol Danvers,carol@uni.edu\ndave,Dave Bowman,dave@uni.edu\nerin,Erin Brockovich,erin@uni.edu\n")


def _zip_name(student: str, when: str) -> str:
    return f"ps00_{student}_attempt_{when}_ps00.ipynb"


@pytest.fixture(scope="module")
def course(toy_course, tmp_path_factory):
    """The fixture course with a late policy; an LMS zip: alice 10 minutes late (within the
    grace period), bob 36 hours late (2 started days: -20%), carol twice (stub, then half
    solved), dave the stub, mallory (not on the roster) and a junk file; erin did not submit."""
    root = tmp_path_factory.mktemp("reports-course")
    shutil.copytree(toy_course.root, root, dirs_exist_ok=True)
    toml = root / "course.toml"
    toml.write_text(toml.read_text().replace("[course]\n", "[course]\n" + POLICY))
    ps = manifest.load(toml)[0]
    stub = notebook.read(ps.release_notebook)
    good, half = (nbformat.writes(nb).encode() for nb in (instructor_submission(ps, stub), partial_submission(ps, stub)))
    stub_b = ps.release_notebook.read_bytes()
    lms = root / "lms.zip"
    with zipfile.ZipFile(lms, "w") as zf:
        zf.writestr(_zip_name("alice", "2027-01-12-00-09-00"), good)
        zf.writestr(_zip_name("bob", "2027-01-13-12-00-00"), good)
        zf.writestr(_zip_name("carol", "2027-01-09-10-00-00"), stub_b)
        zf.writestr(_zip_name("carol", "2027-01-11-10-00-00"), half)
        zf.writestr(_zip_name("dave", "2027-01-11-09-00-00"), stub_b)
        zf.writestr(_zip_name("mallory", "2027-01-11-09-00-00"), good)
        # no time in the name; the member's own modification time (after the due date) is no submission time
        zf.writestr(zipfile.ZipInfo("junk.ipynb", date_time=(2027, 2, 1, 12, 0, 0)), b"{not json")
        zf.writestr("ps00.ipynb", good)  # whose? nobody's
    (root / "roster.csv").write_text(ROSTER)
    later = root / "later"  # dave fixes his notebook: a batch of one
    later.mkdir()
    (later / "dave.ipynb").write_bytes(good)
    return {"ps": ps, "root": root, "lms": lms, "later": later, "good": good}


def _csv(path: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in csv.DictReader(path.open(encoding="utf-8"))}


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    """The whole TA workflow once: grade the zip with the roster, a batch with dave alone, an
    override of carol's cell, then regrade carol; snapshots of the CSV after each step."""
    ps, out_dir = course["ps"], tmp_path_factory.mktemp("reports-out")
    a = Assignment(ps)  # not Assignment.of: its cache would hand back the toy course's (same notebook, other root)
    settings = Settings(cell_timeout=20, jobs=2, out=out_dir)
    out = Outputs(out_dir, ps.id)
    snaps = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch.grade_batch(a, course["lms"], settings, roster=reports.read_roster(course["root"] / "roster.csv"),
                          progress=False)
        snaps["first"] = _csv(out.csv)
        only_dave = batch.grade_batch(a, course["later"], settings, progress=False)
        snaps["after_dave"] = _csv(out.csv)
        with open_gradebook(settings.gradebook_url) as gb:
            set_override(gb, a, "carol", "ex2_mean_square_values", 3.0, "right idea, wrong axis; partial credit")
        reports.publish(a, out, settings.gradebook_url)
        snaps["override"] = _csv(out.csv)
        batch.grade_batch(a, course["lms"], settings, progress=False, student="carol")
        snaps["regraded"] = _csv(out.csv)
    return {"a": a, "out": out, "settings": settings, "snaps": snaps, "only_dave": only_dave,
            "warnings": [str(w.message) for w in caught]}


def test_partial_batch_merges_into_the_class(graded):
    first, after = graded["snaps"]["first"], graded["snaps"]["after_dave"]
    assert [g.student_id for g in graded["only_dave"]] == ["dave"]
    assert set(after) == set(first) == {"alice", "bob", "carol", "dave", "erin", "mallory", "junk"}
    assert first["dave"]["total"] == "0" and after["dave"]["total"] == "10"
    assert {k: v for k, v in after.items() if k != "dave"} == {k: v for k, v in first.items() if k != "dave"}


def test_lms_columns_roster_and_late_policy(graded):
    rows = graded["snaps"]["first"]
    assert list(rows["alice"])[:10] == ["student_id", "first_name", "last_name", "email", "submitted_at",
                                        "late_by_hours", "raw_total", "late_penalty", "total", "max"]
    assert (rows["bob"]["first_name"], rows["bob"]["last_name"], rows["bob"]["email"]) == ("Bob", "Dylan", "bob@uni.edu")
    # alice: 10 minutes late, within the 15-minute grace period
    assert rows["alice"]["late_by_hours"] == "0" and rows["alice"]["total"] == "10" and rows["alice"]["status"] == "ok"
    # bob: 36 h 1 min after the due date of 2027-01-11 23:59 -> 2 started days -> -20 % of 10
    assert rows["bob"]["submitted_at"] == "2027-01-13 12:00:00" and rows["bob"]["late_by_hours"] == "36.02"
    assert (rows["bob"]["raw_total"], rows["bob"]["late_penalty"], rows["bob"]["total"]) == ("10", "2", "8")
    assert rows["bob"]["status"] == "late" and "-20%" in rows["bob"]["notes"]
    assert rows["erin"]["status"] == "no submission" and rows["erin"]["total"] == "0"
    assert rows["erin"]["email"] == "erin@uni.edu" and "no submission" in rows["erin"]["notes"]
    assert "2 submissions; graded the latest" in rows["carol"]["notes"] and rows["carol"]["total"] == "6"
    assert rows["mallory"]["status"] == "flagged" and "not on the roster" in rows["mallory"]["notes"]
    assert rows["junk"]["status"] == "error" and "JSON" in rows["junk"]["reason"]
    assert (rows["junk"]["submitted_at"], rows["junk"]["late_by_hours"]) == ("", "0")


def test_late_policy_arithmetic():
    p = LatePolicy(per_day=10, cap=50, grace_minutes=15)
    due = dt.datetime(2027, 1, 11, 23, 59)
    assert p.late_by(due + dt.timedelta(minutes=15), due) == dt.timedelta(0)
    assert p.percent(p.late_by(due + dt.timedelta(minutes=16), due)) == 10
    assert p.percent(p.late_by(due + dt.timedelta(days=2, minutes=1), due)) == 30
    assert p.penalty(80, p.late_by(due + dt.timedelta(days=30), due)) == 40  # capped at 50 %
    with pytest.raises(manifest.ManifestError):
        LatePolicy(per_day=120)


def test_override_is_shown_and_survives_a_regrade(graded):
    snaps, out = graded["snaps"], graded["out"]
    for step in ("override", "regraded"):
        carol = snaps[step]["carol"]
        assert carol["ex2_mean_square_values"] == "3" and carol["total"] == "9", (step, carol)
        assert "override ex2_mean_square_values: 0 -> 3 (right idea, wrong axis; partial credit)" in carol["notes"]
    page = out.feedback_page("carol").read_text()
    assert "Score set by a TA: 3 (autograder: 0)" in page and "right idea, wrong axis" in page
    from nbgrader.api import Gradebook

    with Gradebook(graded["settings"].gradebook_url) as gb:
        grade = gb.find_grade("ex2_mean_square_values", "ps00", "ps00", "carol")
        assert (grade.auto_score, grade.manual_score) == (0.0, 3.0)


def test_override_rejects_bad_input(graded):
    a = graded["a"]
    with open_gradebook(graded["settings"].gradebook_url) as gb:
        for args, words in [(("zed", "ex1_double_values", 1.0), "no graded submission"),
                            (("carol", "ex9", 1.0), "no graded cell"),
                            (("carol", "ex1_double_values", 5.0), "outside [0, 4]"),
                            (("carol", "ex1_double_values", -1.0), "outside [0, 4]"),
                            (("carol", "ex1_double_values", 1.0, " "), "needs a REASON")]:
            with pytest.raises(OverrideError, match=re.escape(words)):
                set_override(gb, a, *args[:3], args[3] if len(args) > 3 else "why")


def test_cli_override_errors_are_one_line(graded, capsys):
    url = graded["settings"].gradebook_url  # holds ps00 only
    code = cli.main(["override", "ps01", "--student", "nobody-here", "--cell", "q1", "--score", "1",
                     "--reason", "x", "--db", url])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: ps01 has not been graded in this gradebook\n"
    code = cli.main(["override", "ps01", "--student", "bob", "--cell", "q1", "--score", "x", "--db", url])
    assert code == 2 and "SCORE='x' is not a number" in capsys.readouterr().err


def test_nbgrader_export_totals_equal_the_csv(graded, tmp_path):
    exported = tmp_path / "export.csv"
    nbgrader = Path(sys.executable).with_name("nbgrader")
    proc = subprocess.run([str(nbgrader), "export", f"--db={graded['settings'].gradebook_url}", f"--to={exported}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = {r["student_id"]: r for r in csv.DictReader(exported.open())}
    ours = graded["snaps"]["regraded"]
    assert set(theirs) == set(ours)
    for sid, r in ours.items():  # overrides (carol) and late penalties (bob) included
        assert float(theirs[sid]["score"]) == float(r["total"]), sid
        assert float(theirs[sid]["late_submission_penalty"]) == float(r["late_penalty"]), sid
    assert theirs["bob"]["timestamp"].startswith("2027-01-13 12:00") and theirs["bob"]["duedate"].startswith("2027-01-11")


def test_summary_files_match_the_csv(graded):
    out, a = graded["out"], graded["a"]
    rows = [r for r in graded["snaps"]["regraded"].values() if r["status"] != "no submission"]
    page = out.summary_html.read_text()
    for png in (out.totals_png, out.cells_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert page.count("data:image/png;base64,") == 2
    mean_total = statistics.fmean(float(r["total"]) for r in rows)
    assert f"<b id='mean-total'>{mean_total:.2f}</b>" in page
    report = reports.build(a, out, graded["settings"].gradebook_url)
    stats = {s.grade_id: s for s in summary.cell_stats(report)}
    for gid, top in a.max_scores.items():
        got = [float(r[gid]) for r in rows]
        assert stats[gid].mean == pytest.approx(statistics.fmean(got))
        assert stats[gid].full_share == pytest.approx(sum(g >= top for g in got) / len(got))
        assert f"{statistics.fmean(got):.2f} / {top:g}" in page
    # the stub's failure is the most common one on exercise 2 (dave fixed his, mallory passed)
    assert "NotImplementedError" in stats["ex2_mean_square_values"].top_message
    assert stats["ex1_double_values"].failures == 0  # the junk file counts as 0 in the mean, not as a failure
    assert "ps00.ipynb" in page and "junk" in page  # could not be graded, with the reason
    text = summary.text(report)
    assert "could not be graded (2)" in text and "cannot tell whose submission" in text


def test_console_table_cuts_at_words():
    a_long = reports.Row("x", "", "", "", True, None, dt.timedelta(0), 0, 0, 0, 10, {}, {}, {},
                         flags=["suspicious: " + " ".join(["abcdefghij"] * 20)])
    line = reports.summary_table([a_long], type("A", (), {"max_scores": {}})(), width=60).splitlines()[2]
    status = line.split("0/10  ", 1)[1]
    assert status.endswith(" ...") and all(w in ("FLAGGED:", "suspicious:", "abcdefghij", "...")
                                           for w in status.split())


def test_no_warnings_reach_the_console(graded):
    assert not [w for w in graded["warnings"] if "SAWarning" in w or "relationship" in w or "encryption" in w], \
        graded["warnings"]


def test_make_grade_console_shows_progress_and_results_only(tmp_path):
    """`coursekit grade` on the real ps01 with one stub: stdout is the table and the summary,
    stderr only progress lines (no SQLAlchemy warnings, no kernel-over-TCP warning)."""
    ps = manifest.select("ps01")[0]
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copyfile(ps.release_notebook, subs / "bob.ipynb")
    proc = subprocess.run([sys.executable, "-m", "coursekit", "grade", "ps01", "--submissions", str(subs),
                           "--out", str(tmp_path / "out"), "--jobs", "1"], capture_output=True, text=True,
                          cwd=manifest.ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    noise = [line for line in proc.stderr.splitlines() if not re.match(r"^\[[#.]+\] \d+/\d+ graded", line)]
    assert not noise, noise
    assert "Warning" not in proc.stdout and "encryption" not in proc.stdout
    assert re.search(r"^bob\s.*0/100\s+ok$", proc.stdout, re.M), proc.stdout
    assert "class summary: 1 submitted of 1 students" in proc.stdout
    assert (tmp_path / "out" / "summary_ps01.html").exists()


def test_nbgrader_backend_starts_kernels_quietly(toy_course, capfd):
    """ipykernel warns "Kernel is running over TCP without encryption" when nbgrader's
    autograde (make validate, make bench) starts a kernel over TCP; the scratch course uses IPC."""
    from coursekit.backends import Nbgrader

    nbg = Nbgrader(Assignment.of(toy_course))
    try:
        assert nbg.grade(toy_course.release_notebook, "bob") == {
            "ex1_double_values": 0.0, "ex1_double_shape": 0.0, "ex2_mean_square_values": 0.0}
    finally:
        nbg.close()
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
    assert "SAWarning" not in captured.err + captured.out


def test_bad_student_or_roster_is_a_clear_error(course, tmp_path):
    a = Assignment(course["ps"])
    with pytest.raises(batch.NoSuchStudent, match="no submission of 'zed'"):
        batch.grade_batch(a, course["lms"], Settings(out=tmp_path / "out"), student="zed", progress=False)
    bad = tmp_path / "roster.csv"
    bad.write_text("id,name\nalice,Alice\n")
    with pytest.raises(reports.RosterError, match="no student_id column"):
        reports.read_roster(bad)


def test_nbgrader_export_writes_into_the_ignored_grading_folder():
    """`nbgrader export` run in the repository writes where nbgrader_config.py says: under
    grading/ (ignored by git), not grades.csv in the repository's tracked tree."""
    from traitlets.config.loader import PyFileConfigLoader

    layout = manifest.Layout()
    cfg = PyFileConfigLoader(layout.nbgrader_config.name, path=str(layout.nbgrader_config.parent)).load_config()
    target = cfg.ExportPlugin.to
    assert target.startswith("grading/"), target
    ignored = subprocess.run(["git", "check-ignore", "-q", target], cwd=layout.root)
    assert ignored.returncode == 0, f"{target} is not ignored by git"


def test_a_saved_grade_takes_the_new_submission_time(course, graded, tmp_path):
    """The same notebook submitted again later is not regraded (saved result), but its new time
    is the one the late policy sees."""
    out_dir = tmp_path / "out"
    shutil.copytree(graded["out"].root, out_dir)
    again = tmp_path / "again.zip"
    with zipfile.ZipFile(again, "w") as zf:
        zf.writestr(_zip_name("bob", "2027-01-16-00-30-00"), course["good"])  # 4 days 31 min late
    settings = graded["settings"].replace(out=out_dir)
    (g,) = batch.grade_batch(graded["a"], again, settings, progress=False)
    before = json.loads(graded["out"].saved_result("bob").read_text())
    saved = json.loads((out_dir / "autograded" / "ps00" / "bob.json").read_text())
    assert g.seconds == before["seconds"] and saved["timestamp"] == "2027-01-16 00:30:00"  # reused, new time
    bob = _csv(out_dir / "grades_ps00.csv")["bob"]
    assert (bob["submitted_at"], bob["late_penalty"], bob["total"]) == ("2027-01-16 00:30:00", "5", "5")


def test_a_problem_set_may_set_its_own_late_policy(tmp_path):
    toml = tmp_path / "course.toml"
    text = (Path(__file__).parents[1] / "fixtures" / "course" / "course.toml").read_text()
    toml.write_text(text.replace("[course]\n", "[course]\n" + POLICY)
                    .replace("points = 10\n", "points = 10\nlate_penalty_per_day = 25\n"))
    (ps,) = manifest.load(toml)
    assert LatePolicy.of(ps) == LatePolicy(per_day=25, cap=50, grace_minutes=15)
    toml.write_text(toml.read_text().replace("late_penalty_per_day = 25", 'late_penalty_per_day = "lots"'))
    with pytest.raises(manifest.ManifestError, match="must be numbers"):
        LatePolicy.of(ps)
