"""One set of grading settings, read once: flags over environment over nbgrader_config.py over
defaults, handed alike to `make grade` and to the Gradescope zip (`make autograder`)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile

import nbformat
import pytest

from coursekit import otter_plugin
from coursekit.manifest import ROOT, Layout, get
from coursekit.settings import Settings, SettingsError, nbgrader_db_url

MAKE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("PS", "SUBMISSIONS", "JOBS", "DB", "ROSTER", "CELL_TIMEOUT", "MEMORY_GB", "OUT")}


def _make(*args: str) -> subprocess.CompletedProcess:
    # -o: never rebuild the virtual environment from inside a test
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", *args], cwd=ROOT, env=MAKE_ENV,
                          capture_output=True, text=True, timeout=600)


def test_flags_over_environment_over_defaults(tmp_path):
    env = {"CELL_TIMEOUT": "7", "MEMORY_GB": "3", "JOBS": "2", "OUT": str(tmp_path / "o")}
    s = Settings.resolve(env=env)
    assert (s.cell_timeout, s.memory_gb, s.jobs, s.out) == (7.0, 3.0, 2, (tmp_path / "o").resolve())
    s = Settings.resolve(cell_timeout=9, jobs=1, env=env)
    assert (s.cell_timeout, s.memory_gb, s.jobs) == (9.0, 3.0, 1)
    d = Settings.resolve(env={})
    assert (d.cell_timeout, d.memory_gb, d.jobs, d.out) == (60.0, 6.0, 0, None)
    assert d.limits.memory_bytes == 6 * 2**30 and d.limits.cell_timeout == 60.0
    assert Settings.resolve(jobs=1, env={}).limits.threads == max(1, os.cpu_count() or 1)
    assert Settings.resolve(jobs=1, env={}).replace(job_threads=1).limits.threads == 1


@pytest.mark.parametrize("env", [{"CELL_TIMEOUT": "soon"}, {"MEMORY_GB": "-1"}, {"JOBS": "-2"}, {"CELL_TIMEOUT": "0"}])
def test_bad_settings_are_clear_errors(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.resolve(env=env)


def test_gradebook_db_then_out_then_nbgrader_config(tmp_path):
    assert Settings.resolve(db="postgresql://u:p@h/dlt", out=str(tmp_path), env={}).gradebook_url == "postgresql://u:p@h/dlt"
    assert Settings.resolve(out=str(tmp_path), env={}).gradebook_url == f"sqlite:///{tmp_path.resolve()}/gradebook.db"
    assert Settings.resolve(env={}).gradebook_url == nbgrader_db_url() == f"sqlite:///{ROOT}/grading/gradebook.db"
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.db_url = 'sqlite:///gb/x.db'\n")
    assert nbgrader_db_url(Layout(tmp_path)) == f"sqlite:///{tmp_path}/gb/x.db"


@pytest.mark.slow
def test_make_autograder_limits_travel_in_the_zip():
    proc = _make("autograder", "PS=ps02", "CELL_TIMEOUT=5", "MEMORY_GB=2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(get("ps02").autograder_zip) as zf:
        cfg = json.loads(zf.read("otter_config.json"))
        shipped = set(zf.namelist())
    (plugin,) = cfg["plugins"]
    limits = otter_plugin.limits_from(dict(plugin["coursekit.otter_plugin.GradingPlugin"]))
    assert limits.cell_timeout == 5 and limits.memory_bytes == 2 * 2**30
    assert {f"coursekit/{p.name}" for p in (ROOT / "coursekit").glob("*.py")} <= shipped  # the whole grader


@pytest.mark.slow
def test_make_grade_out_writes_nothing_under_grading(tmp_path):
    def snapshot():
        folder = Layout().grading
        return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}

    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(nbformat.read(str(get("ps02").release_notebook), as_version=4), str(subs / "zoe.ipynb"))
    before = snapshot()
    proc = _make("grade", "PS=ps02", f"SUBMISSIONS={subs}", f"OUT={tmp_path / 'out'}", "JOBS=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before
    out = tmp_path / "out"
    assert (out / "grades_ps02.csv").exists() and (out / "gradebook.db").exists()
    assert (out / "feedback" / "ps02" / "zoe" / "ps02.html").exists()
    assert "SAWarning" not in proc.stdout + proc.stderr


def test_every_pinned_dependency_supports_the_declared_python_range():
    """requires-python is what the pins allow: checked against each pinned distribution's own
    Requires-Python (CI has Python 3.11 only, so the other ends are checked on metadata)."""
    import importlib.metadata as md
    import sys
    import tomllib

    from packaging.specifiers import SpecifierSet

    declared = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    ends = [v for v in ("3.11.5", "3.12.0", "3.13.0") if v in declared]
    assert ends == ["3.11.5", "3.12.0", "3.13.0"] and "3.10.14" not in declared and "3.14.0" not in declared
    assert "{}.{}.{}".format(*sys.version_info[:3]) in declared
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" not in line:
            continue
        name = line.split("==")[0].split("[")[0]
        needs = md.metadata(name).get("Requires-Python")
        if needs:
            assert all(v in SpecifierSet(needs) for v in ends), f"{name} requires Python {needs}"


def test_xdist_groups_keep_a_files_tests_on_one_worker(tmp_path):
    """`make test` relies on --dist loadgroup to compute each file's shared gradings once."""
    import sys

    (tmp_path / "conftest.py").write_text(  # the real hook of tests/conftest.py, loaded by path
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dlt_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "real = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(real)\n"
        "pytest_collection_modifyitems = real.pytest_collection_modifyitems\n")
    for name in "abcd":
        (tmp_path / f"test_{name}.py").write_text(
            "import os\n" + "".join(f"def test_{i}():\n"
                                    f"    open('log', 'a').write('{name} ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
                                    for i in range(3)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    workers = {}
    for row in (tmp_path / "log").read_text().splitlines():
        name, worker = row.split()
        workers.setdefault(name, set()).add(worker)
    assert len(workers) == 4 and all(len(w) == 1 for w in workers.values()), workers
