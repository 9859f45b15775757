"""`make release`: nbgrader's generate_assignment builds release/psNN/ from source/psNN/.

The release folder is the student bundle: the student notebook (with a "how to work" cell
inserted before its setup cell), ``dlt_checks.py`` (the comparison helper and pre-submit check,
a copy of ``coursekit/checks.py``), ``psNN.locked.json`` (fingerprints of the locked cells, so
that the pre-submit check sees an edited or deleted test cell), ``requirements.txt`` (what the
notebook and its tests import, pinned as the grader's environment) and ``README.md`` (install,
work, check, submit). It is committed; ``check`` regenerates it in a scratch folder and lists any
difference.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import tempfile
from pathlib import Path

from . import autograder, checks
from .assignment import Assignment
from .manifest import ProblemSet
from .nbg import ScratchCourse

# Inserted into every released notebook just before its setup cell (an unlabelled markdown cell:
# grading, validation and the locked-cell fingerprints ignore it).
HOW_TO_WORK = """\
## How to work on this notebook

- Run the cells in order, starting with the setup cell below (it needs `dlt_checks.py` next to the notebook).
- Each exercise: replace `raise NotImplementedError()` in its solution cell with your code, run that cell,
  then run the test cell right after it. A test cell that runs without an error passed its public tests;
  hidden tests run when it is graded.
- `Run All` stops at the first exercise you have not finished: that is expected. Figure cells of unfinished
  exercises print "Figure skipped" instead of failing.
- Before submitting: `python dlt_checks.py {ps}.ipynb` (unfinished exercises, syntax errors, edited or
  deleted test cells), then submit this `.ipynb` file."""


def add_how_to_work(nb_path: Path, ps_id: str) -> None:
    """Insert the HOW_TO_WORK markdown cell before the setup cell (at the top if there is none)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    at = next((i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"), 0)
    cell = nbformat.v4.new_markdown_cell(HOW_TO_WORK.format(ps=ps_id))
    cell.id = f"{ps_id}-how-to-work"
    nb.cells.insert(at, cell)
    nbformat.write(nb, nb_path)


# Beyond the notebook's own imports (hidden tests' included): numpy for dlt_checks.py, Jupyter to work in.
STUDENT_EXTRAS = ("numpy", "notebook", "ipykernel")

README = """\
# {ps} — {title}

Files (keep them together): `{ps}.ipynb`, the notebook you work in and submit; `dlt_checks.py`, the
checks its tests use and the pre-submit check; `{ps}.locked.json`, fingerprints of the test cells;
`requirements.txt`, the packages the notebook needs, pinned as the grader has them (CPU-only torch).

## Install (Python 3.11)

    python3.11 -m venv .venv
    source .venv/bin/activate          # Windows: .venv\\Scripts\\activate
    pip install -r requirements.txt
    jupyter notebook {ps}.ipynb        # or: jupyter lab

## Work

Run the cells in order. For each exercise, replace `raise NotImplementedError()` in its solution cell
with your code, run that cell, then run the test cell right after it: no error means the public tests
pass (hidden tests run at grading time, so that is necessary, not sufficient). `Run All` stops at the
first exercise you have not finished; figure cells of unfinished exercises print "Figure skipped".

## Check and submit

    python dlt_checks.py {ps}.ipynb

lists unfinished exercises, syntax errors and test cells you edited or deleted. Then submit `{ps}.ipynb`.
"""


def write_bundle(ps: ProblemSet, dest: Path) -> None:
    """``requirements.txt`` and ``README.md`` of the student bundle of ``ps`` into ``dest``."""
    (dest / "requirements.txt").write_text(autograder.requirements(Assignment.of(ps), extra=STUDENT_EXTRAS))
    (dest / "README.md").write_text(README.format(ps=ps.id, title=ps.title))


def build(ps: ProblemSet, dest: Path | None = None) -> Path:
    """Generate the student release of ``ps`` into ``dest`` (default: release/psNN/)."""
    dest = Path(dest or ps.release_dir)
    course = ScratchCourse(ps)
    try:
        built = course.generate()
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(built, dest)
        add_how_to_work(dest / ps.release_notebook.name, ps.id)
        write_bundle(ps, dest)
        nb = json.loads((dest / ps.release_notebook.name).read_text(encoding="utf-8"))
        (dest / f"{ps.id}.locked.json").write_text(json.dumps(checks.locked_fingerprints(nb), indent=1) + "\n")
    finally:
        course.close()
    return dest


def check(ps: ProblemSet) -> list[str]:
    """Differences between the committed release and a fresh one; empty when up to date."""
    if not ps.release_dir.exists():
        return [f"{ps.release_dir} is missing: run `make release PS={ps.id}`"]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build(ps, Path(tmp) / ps.id)
        cmp = filecmp.dircmp(fresh, ps.release_dir)
        problems = []

        def walk(c, prefix=""):
            for name in c.left_only:
                problems.append(f"missing in release/: {prefix}{name}")
            for name in c.right_only:
                problems.append(f"extra in release/: {prefix}{name}")
            for name in c.diff_files:
                problems.append(f"out of date: {prefix}{name}")
            for name in c.funny_files:
                problems.append(f"cannot compare: {prefix}{name}")
            for sub, subcmp in c.subdirs.items():
                walk(subcmp, f"{prefix}{sub}/")

        # dircmp's shallow compare trusts size+mtime: compare bytes
        for name in cmp.common_files:
            if (Path(fresh) / name).read_bytes() != (ps.release_dir / name).read_bytes():
                cmp.diff_files.append(name) if name not in cmp.diff_files else None
        walk(cmp)
        return [f"{ps.id}: {p} (run `make release PS={ps.id}`)" for p in sorted(set(problems))]
