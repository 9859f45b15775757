"""What a Gradescope student sees: the otter zip's results.json for a partial submission shows
each graded cell's public-part result and message at once, the scores and full results only once
grades are published, never a hidden test's source or message; a file that is not a notebook gets
`make grade`'s one-line reason; the zip's environment builds from its own files."""

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import yaml

from coursekit import autograder, batch, manifest, notebook, otter_plugin, sandbox
from coursekit.assignment import Assignment
from coursekit.validate import instructor_submission

pytestmark = pytest.mark.slow

LIMITS = sandbox.Limits(cell_timeout=20.0)
# the toy set: ex1 right except on inputs of length 3 (fails the public shape test), ex2 right
# except on negative entries (fails only its hidden test)
DOUBLE = "def double(x):\n    return 2 * x if len(x) != 3 else 2 * x[:2]\n"
MEAN_SQUARE = "def mean_square(x):\n    return float(np.mean(np.abs(x) * x))\n"
HIDDEN_MESSAGE = "mean_square of a negative"  # the name given in ex2's hidden assertion


def _partial(ps) -> nbformat.NotebookNode:
    nb = instructor_submission(ps)
    for cell in nb.cells:
        gid = notebook.nb_meta(cell).get("grade_id")
        cell.source = {"ex1_double": DOUBLE, "ex2_mean_square": MEAN_SQUARE}.get(gid, cell.source)
    return nb


@pytest.fixture(scope="module")
def graded(toy_course, tmp_path_factory):
    """The toy zip's results.json for the partial submission, and `make grade`'s grading of it."""
    tmp = tmp_path_factory.mktemp("gradescope")
    path = tmp / "ps00.ipynb"
    nbformat.write(_partial(toy_course), str(path))
    a = Assignment.of(toy_course)
    zip_path = autograder.build(a, LIMITS)
    return {"zip": zip_path, "results": autograder.results(zip_path, path),
            "make_grade": batch.grade_file(a, path, "partial", LIMITS), "a": a}


def _visible(results: dict) -> str:
    """Everything a student sees before grades are published."""
    return "\n".join([results.get("output", "")] + [json.dumps(t) for t in results["tests"]
                                                    if t.get("visibility", "visible") == "visible"])


def test_the_grader_reports_where_a_test_cell_failed(graded):
    """The trusted side's line of failure (the public-part verdict rests on it): ex2 failed on line 3
    of its cell as run (docstring, public assertion, hidden assertion), ex1's shape cell on line 2."""
    _, results = graded["make_grade"]
    line = {r.grade_id: r.line for r in results if r.kind == "test"}
    assert line == {"ex1_double_values": None, "ex1_double_shape": 2, "ex2_mean_square_values": 3}
    ex2 = next(c for c in graded["a"].tests if c.grade_id == "ex2_mean_square_values")
    assert otter_plugin.hidden_lines(ex2.source) == {3}


def test_students_see_each_public_result_now_and_the_scores_after_publication(graded):
    results, (g, _) = graded["results"], graded["make_grade"]
    visible = [t for t in results["tests"] if t.get("visibility", "visible") == "visible"]
    assert [t["name"] for t in visible] == ["Public Tests"] and visible[0]["status"] == "failed"
    text = visible[0]["output"]
    sections = dict(part.split(" results", 1) for part in text.split("\n\n") if " results" in part)
    assert set(sections) == {"ex1_double_values", "ex1_double_shape", "ex2_mean_square_values"}
    assert "All test cases passed" in sections["ex1_double_values"]
    assert "All test cases passed" in sections["ex2_mean_square_values"]  # only a hidden test failed
    assert "failed: CheckError: wrong shape for double(x): yours (2,), expected (3,)" in sections["ex1_double_shape"]
    assert "2 of 3 graded cells" in results["output"]
    # per cell: the score and the full result, once grades are published
    cells = {t["name"]: t for t in results["tests"] if "max_score" in t}
    assert {t["visibility"] for t in cells.values()} == {"after_published"}
    assert {k: t["score"] for k, t in cells.items()} == g.scores == {
        "ex1_double_values": 4.0, "ex1_double_shape": 0.0, "ex2_mean_square_values": 0.0}
    assert sum(t["score"] for t in cells.values()) == g.total == 4.0
    assert HIDDEN_MESSAGE in cells["ex2_mean_square_values"]["output"]


def test_no_hidden_test_source_or_message_is_visible(graded):
    visible = _visible(graded["results"])
    assert HIDDEN_MESSAGE not in visible and "yours -4" not in visible
    hidden = {line.strip() for c in graded["a"].tests for n, line in enumerate(notebook.instructor_source(
        c.source).splitlines(), 1) if n in otter_plugin.hidden_lines(c.source) and line.strip()}
    assert hidden and not [line for line in hidden if line in visible]


def test_messages_are_the_graders_own_reasons(graded):
    everything = json.dumps(graded["results"])
    for wrapper in ("raise AssertionError", "Error at line", "exec(compile", "__dlt_verdicts__", "Traceback"):
        assert wrapper not in everything
    g, _ = graded["make_grade"]
    shape = next(t for t in graded["results"]["tests"] if t["name"] == "ex1_double_shape")
    assert f"failed: {g.messages['ex1_double_shape']}" in shape["output"]


def _gradescope_dir(zip_path: Path, submission: Path, root: Path) -> Path:
    """/autograder as Gradescope lays it out: source/ (the zip), submission/, results/."""
    ag = root / "autograder"
    for sub in ("source", "submission", "results"):
        (ag / sub).mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(ag / "source")
    (ag / "submission_metadata.json").write_text("{}")
    shutil.copy(submission, ag / "submission" / submission.name)
    return ag


def test_a_file_that_is_not_a_notebook_gets_make_grades_reason(graded, tmp_path):
    junk = tmp_path / "ps00.ipynb"
    junk.write_text("print('my homework')\n")
    ag = _gradescope_dir(graded["zip"], junk, tmp_path)
    proc = subprocess.run([sys.executable, str(ag / "source" / "run_otter.py"), str(ag)], capture_output=True,
                          text=True, timeout=120, cwd=ag)
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr
    results = json.loads((ag / "results" / "results.json").read_text())
    g, _ = batch.grade_file(graded["a"], junk, "junk", LIMITS)
    assert g.error.startswith("not a notebook: invalid JSON")
    assert results["score"] == 0
    assert [t["output"] for t in results["tests"]] == [f"not graded: {g.error}"]
    assert results["tests"][0]["visibility"] == "visible"


def test_the_zip_ships_the_projects_environment(graded):
    with zipfile.ZipFile(graded["zip"]) as zf:
        names = set(zf.namelist())
        env = yaml.safe_load(zf.read("environment.yml"))
        setup = zf.read("setup.sh").decode()
        run_otter = zf.read("run_otter.py").decode()
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    assert "otter-grader[grading]==7.0.0" in pip and "torch==2.13.0" in pip
    assert all("==" in p for p in pip if not p.startswith("--")), pip
    assert "playwright" not in setup and "mamba env create -f /autograder/source/environment.yml" in setup
    assert "run_gradescope" in run_otter and "coursekit/otter_plugin.py" in names
    assert "requirements.txt" not in names
    assert not (graded["zip"].parent / "requirements.txt").exists()  # no stray file beside the zip


CHEAP = "ps09"  # the cheapest problem set to grade (bench/bench.md)


@pytest.mark.skipif(not shutil.which("python3.11"), reason="needs python3.11 to build a fresh venv")
def test_the_zip_environment_builds_from_its_own_files_and_grades(tmp_path):
    """As Gradescope would: a fresh Python 3.11 with what the zip's environment.yml lists (conda's
    part: pip and jupyter_server; pip's part as is), then the zip's run_otter.py on a submission."""
    t0 = time.perf_counter()
    ps = manifest.get(CHEAP)
    a = Assignment(replace(ps, root=tmp_path / "course"), Assignment.of(ps).source_nb)
    zip_path = autograder.build(a, sandbox.Limits(cell_timeout=60.0))
    with zipfile.ZipFile(zip_path) as zf:
        env = yaml.safe_load(zf.read("environment.yml"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert conda == ["python=3.11", "pip", "jupyter_server"]
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(["jupyter_server"] + next(d["pip"] for d in env["dependencies"]
                                                           if isinstance(d, dict))) + "\n")
    venv = tmp_path / "venv"
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip_env = {**os.environ, "PIP_RETRIES": "0", "PIP_TIMEOUT": "20"}  # no network beyond the registries here
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", "-r", str(reqs)],
                          capture_output=True, text=True, env=pip_env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = time.perf_counter() - t0
    versions = subprocess.run([str(python), "-c", "import sys, torch; print(sys.version_info[:2], torch.__version__)"],
                              capture_output=True, text=True, check=True).stdout
    assert "(3, 11) 2.13.0+cpu" in versions, versions

    first = next(c.grade_id for c in a.cells if c.kind == "solution")
    path = tmp_path / f"{ps.id}.ipynb"
    nbformat.write(instructor_submission(ps, solved={first}), str(path))
    ag = _gradescope_dir(zip_path, path, tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.run([str(python), str(ag / "source" / "run_otter.py"), str(ag)], capture_output=True,
                          text=True, timeout=600, cwd=ag, env={**clean, "PATH": f"{venv / 'bin'}:{clean['PATH']}"})
    results = json.loads((ag / "results" / "results.json").read_text())
    g, _ = batch.grade_file(Assignment.of(ps), path, "partial", sandbox.Limits(cell_timeout=60.0))
    assert autograder.scores(results) == g.scores, proc.stdout[-3000:]
    assert 0 < g.total < g.max_total
    print(f"venv from the zip's files: {installed:.0f} s; whole test {time.perf_counter() - t0:.0f} s")
