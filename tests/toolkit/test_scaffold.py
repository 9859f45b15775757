"""`make new PS=psNN TITLE=...`: a new problem set that passes check-source, release and validate at once.

The end-to-end test runs the real make targets in a temporary copy of the course's tooling (coursekit,
Makefile, manifest), never in this repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from coursekit import manifest, notebook, scaffold
from coursekit.manifest import ROOT, ManifestError

PLANNED = '''
[[problem_set]]
id = "ps01"
title = "Planned Week"
status = "planned"
release = "2027-01-11"
due = "2027-01-18T23:59:00"
points = 100
papers = ["Somebody (2025). A paper."]
'''


@pytest.fixture
def course(toy_course, tmp_path):
    """A copy of the fixture course (ps00 written) with a planned ps01; returns its manifest path."""
    root = tmp_path / "course"
    shutil.copytree(toy_course.root, root)
    toml = root / "course.toml"
    toml.write_text(toml.read_text() + PLANNED)
    return toml


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_existing_or_malformed_id_is_refused_and_nothing_is_written(course):
    before = _tree(course.parent)
    with pytest.raises(ManifestError, match=r"ps00 already exists in course.toml \(status written\): edit "
                                            r"source/ps00/ps00.ipynb instead"):
        scaffold.new("ps00", "Another", path=course)
    with pytest.raises(ManifestError, match="a problem set id is 'ps' and two digits"):
        scaffold.new("week3", "Another", path=course)
    with pytest.raises(ManifestError, match='ps05 is not in course.toml: give its title, TITLE="..."'):
        scaffold.new("ps05", None, path=course)
    with pytest.raises(ManifestError, match="TOPIC='Bad-Topic'"):
        scaffold.new("ps05", "Fine", topic="Bad-Topic", path=course)
    (course.parent / "source" / "ps05").mkdir(parents=True)
    (course.parent / "source" / "ps05" / "ps05.ipynb").write_text("{}")
    with pytest.raises(ManifestError, match=r"ps05: source/ps05/ps05.ipynb already exist\(s\)"):
        scaffold.new("ps05", "Fine", path=course)
    (course.parent / "source" / "ps05" / "ps05.ipynb").unlink()
    assert _tree(course.parent) == before


def test_a_planned_entry_is_filled_in_keeping_its_title_dates_and_papers(course):
    ps = scaffold.new("ps01", None, path=course)
    (ps00, ps01) = manifest.load(course)
    assert ps01 == ps and ps01.written and ps01.module == "solutions.ps01_planned_week"
    assert (ps01.title, str(ps01.release), ps01.papers) == ("Planned Week", "2027-01-11", ("Somebody (2025). A paper.",))
    assert ps00.module == "ps00_toy"  # the other entry untouched
    nb = notebook.read(ps01.source_notebook)
    assert notebook.lint(nb, ps01.points) == []
    assert "Somebody (2025). A paper." in nb.cells[0].source and nb.cells[0].source.startswith("# ps01 — Planned Week")
    for f in (ps01.solution_file, ps01.unit_tests, ps01.mutant_tests):
        assert f.is_file(), f
    with pytest.raises(ManifestError, match="ps01 already exists"):
        scaffold.new("ps01", None, path=course)


def test_a_new_entry_goes_after_the_last_set_a_week_later(course):
    ps = scaffold.new("ps02", 'Kernels, "Lazy" and Rich', path=course)
    sets = manifest.load(course)
    assert [p.id for p in sets] == ["ps00", "ps01", "ps02"]
    assert ps.title == 'Kernels, "Lazy" and Rich' and ps.module == "solutions.ps02_kernels_lazy_rich"
    assert (str(ps.release), f"{ps.due:%Y-%m-%d %H:%M}") == ("2027-01-18", "2027-01-25 23:59")
    assert (ps.status, ps.points) == ("written", 100)
    nb = notebook.read(ps.source_notebook)
    tests = notebook.test_cells(nb)
    assert [(c.grade_id, c.points, c.hidden) for c in tests] == [("ex1_mse_gradient_values", 100.0, True)]


@pytest.mark.slow
def test_make_new_then_check_source_release_validate_pass_in_a_copy_of_the_course(tmp_path):
    """The whole author's path with the real make targets; the scaffolded unit and mutant tests pass too."""
    root = tmp_path / "course"
    root.mkdir()
    for name in ("coursekit", "Makefile", "course.toml", "pyproject.toml", "requirements.lock", "nbgrader_config.py",
                 "solutions/__init__.py", "tests/mutants/conftest.py", "tests/mutants/variants.py"):
        src, dest = ROOT / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, dest))
    for name in ("pyproject.toml", "requirements.lock"):  # older than the venv's stamp: make never reinstalls
        os.utime(root / name, (0, 0))
    (root / ".venv").symlink_to(ROOT / ".venv")
    new_id = f"ps{len(manifest.load()) + 1:02d}"
    env = {k: v for k, v in os.environ.items() if k not in ("PS", "TITLE", "TOPIC", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}

    def run(*cmd):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout, time.perf_counter() - t0

    out, t_new = run("make", "new", f"PS={new_id}", "TITLE=Kernel Regimes of Wide Networks")
    assert f"tests/mutants/test_{new_id}_mutants.py" in out
    out, t_check = run("make", "check-source", f"PS={new_id}")
    assert f"{new_id}: source OK" in out
    out, t_release = run("make", "release", f"PS={new_id}")
    assert (root / "release" / new_id / f"{new_id}.ipynb").is_file()
    out, t_validate = run("make", "validate", f"PS={new_id}")
    assert f"{new_id}: VALID" in out
    print(f"\nmake new -> make validate passing: {t_new + t_check + t_release + t_validate:.0f} s "
          f"(new {t_new:.1f}, check-source {t_check:.1f}, release {t_release:.1f}, validate {t_validate:.1f})")
    out, _ = run(".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 f"tests/solutions/test_{new_id}_kernel_regimes_wide.py", f"tests/mutants/test_{new_id}_mutants.py")
    assert "6 passed" in out, out
    assert not (ROOT / "source" / new_id).exists() and new_id not in {p.id for p in manifest.load()}
