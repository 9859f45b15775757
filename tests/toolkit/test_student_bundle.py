"""The student bundle (release/psNN/): requirements.txt and README.md say what to install and how to work,
and the requirements suffice: installed into a fresh venv, the released notebook runs there."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from coursekit import manifest, notebook
from coursekit.validate import instructor_submission

# a set whose notebook and tests import the most (scipy and scikit-learn besides numpy, torch, matplotlib)
WIDEST = "ps05"


def _requirements(ps) -> list[str]:
    return (ps.release_dir / "requirements.txt").read_text().splitlines()


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_bundle_pins_cpu_torch_jupyter_and_says_how_to_work(ps):
    lines = _requirements(ps)
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu", lines
    pins = dict(line.split("==", 1) for line in lines[1:])
    assert pins["torch"] == "2.13.0" and "notebook" in pins and "ipykernel" in pins
    assert {"numpy", "matplotlib", "scipy"} <= set(pins), pins  # every set's setup or tests use these
    assert all(line.count("==") == 1 and " " not in line for line in lines[1:]), "only pinned package names"
    readme = (ps.release_dir / "README.md").read_text()
    for step in ("python3.11 -m venv", "pip install -r requirements.txt", "raise NotImplementedError()",
                 f"python dlt_checks.py {ps.id}.ipynb", f"submit `{ps.id}.ipynb`"):
        assert step in readme, f"{ps.id}/README.md lacks {step!r}"


def test_what_only_some_notebooks_import_is_in_their_requirements():
    """Read off the notebooks: ps05 tests against scikit-learn's Lasso, ps02 solves with cvxpy, ps11 uses POT."""
    wanted = {"ps05": "scikit-learn", "ps02": "cvxpy", "ps11": "pot", "ps08": "scikit-learn"}
    for ps_id, dist in wanted.items():
        assert any(line.startswith(dist + "==") for line in _requirements(manifest.get(ps_id))), (ps_id, dist)
    assert not any(line.startswith("cvxpy==") for line in _requirements(manifest.get("ps05")))


RUNNER = r'''
import json, sys
import nbformat
from nbclient import NotebookClient

folder, report = sys.argv[1], {}
for name in sys.argv[2:]:
    nb = nbformat.read(f"{folder}/{name}", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    NotebookClient(nb, timeout=600, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": folder}}).execute()
    cells = []
    for c in nb.cells[1:]:
        if c.cell_type == "code":
            err = next((o for o in c.outputs if o.output_type == "error"), None)
            cells.append([c.metadata.get("nbgrader", {}).get("grade_id"), err and err.ename, err and err.evalue[:200]])
    report[name] = {"prefix": "".join(o.get("text", "") for o in nb.cells[0].outputs).strip(), "cells": cells}
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def bundle_venv(tmp_path_factory):
    """release/<WIDEST>/ copied to a folder, its requirements.txt installed into a fresh venv there."""
    ps = manifest.get(WIDEST)
    work = tmp_path_factory.mktemp("bundle")
    folder = work / ps.id
    shutil.copytree(ps.release_dir, folder)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=300)
    python = work / "venv" / "bin" / "python"
    # --retries 0: this machine cannot reach download.pytorch.org and finds the CPU torch wheel in the local
    # wheel folder; retrying the unreachable index would only wait. --no-compile: nothing here needs .pyc files.
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", "--retries", "0",
                           "-r", str(folder / "requirements.txt")], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\n{ps.id}: venv with its requirements installed in {time.perf_counter() - t0:.0f}s")
    yield ps, folder, python
    # about 1.5 GB in many small files: removed in the background (a minute of disk time when the machine is busy)
    subprocess.Popen(["rm", "-rf", str(work)], start_new_session=True)


@pytest.mark.slow
def test_requirements_suffice_to_run_the_released_notebook(bundle_venv):
    ps, folder, python = bundle_venv
    solved = instructor_submission(ps, notebook.read(folder / f"{ps.id}.ipynb"))
    solved.cells = [c for c in solved.cells if c.cell_type != "code" or notebook.nb_meta(c)]  # figures left out
    nbformat.write(solved, str(folder / "solved.ipynb"))
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), "-c", RUNNER, str(folder), "solved.ipynb", f"{ps.id}.ipynb"],
                          capture_output=True, text=True, timeout=1800, env={"PATH": str(python.parent),
                                                                             "HOME": str(folder), "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"{ps.id}: solved and stub notebooks run in the bundle's kernel in {time.perf_counter() - t0:.0f}s")
    report = json.loads(proc.stdout.splitlines()[-1])
    venv = str(python.parent.parent)
    assert report["solved.ipynb"]["prefix"] == venv and report[f"{ps.id}.ipynb"]["prefix"] == venv
    tests = [gid for gid, *_ in report["solved.ipynb"]["cells"] if gid in {t.grade_id for t in
                                                                          notebook.test_cells(solved)}]
    assert len(tests) >= 5
    failed = [c for c in report["solved.ipynb"]["cells"] if c[1]]
    assert failed == [], f"public tests fail with the reference solutions in the bundle's venv: {failed}"
    stub = report[f"{ps.id}.ipynb"]["cells"]
    errors = {ename for _, ename, _ in stub if ename}
    assert stub[0] == ["setup", None, None], stub[0]
    assert errors == {"NotImplementedError"}, [c for c in stub if c[1] and c[1] != "NotImplementedError"]
