"""`make demo`: release and build autograders for every written problem set, then grade the
demo class shipped in `demo/<ps>/` and print the per-student, per-question table.

The demo class is made from the release and the reference solutions (``--refresh`` rewrites it):
- alice: the reference solution (full marks)
- bob:   the untouched released stub (zero)
- carol: the first half of the exercises solved, the rest left as stubs (partial)
- dave:  the reference solution, but the first solution cell raises before defining anything
- erin:  a cheater who monkeypatches the checks (flagged, zero where it matters)
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from pathlib import Path

import nbformat

from . import autograder, grade, notebook, release
from .manifest import ROOT, ProblemSet, select
from .validate import instructor_submission, partial_submission

DEMO = ROOT / "demo"
CHEAT = ("import numpy as np\nimport dlt_checks\n"
         "np.allclose = lambda *a, **k: True\n"
         "dlt_checks.assert_close = lambda *a, **k: None\n"
         "assert_close = lambda *a, **k: None\n")


def make_class(ps: ProblemSet) -> dict[str, object]:
    """Student id -> notebook of the demo class of ``ps``."""
    stub = notebook.read(ps.release_notebook)
    full = instructor_submission(ps, stub)
    carol = partial_submission(ps, stub)
    dave = copy.deepcopy(full)
    first_solution = next(i for i, c in enumerate(dave.cells) if notebook.nb_meta(c).get("solution"))
    dave.cells[first_solution].source = ("raise RuntimeError('I left a debugging line in my notebook')\n"
                                         + dave.cells[first_solution].source)
    erin = copy.deepcopy(stub)
    cheat = nbformat.v4.new_code_cell(CHEAT)
    cheat["id"] = "demo-" + hashlib.sha256(CHEAT.encode()).hexdigest()[:8]  # stable, for a clean diff
    erin.cells.insert(first_solution, cheat)
    return {"alice": full, "bob": stub, "carol": carol, "dave": dave, "erin": erin}


def refresh(ps: ProblemSet) -> Path:
    folder = DEMO / ps.id
    folder.mkdir(parents=True, exist_ok=True)
    for student, nb in make_class(ps).items():
        nbformat.write(nb, str(folder / f"{student}.ipynb"))
    return folder


def main(jobs: int | None = None, refresh_class: bool = False) -> int:
    sets = select(None)
    for ps in sets:
        t0 = time.perf_counter()
        release.build(ps)
        z = autograder.build(ps)
        print(f"{ps.id}: release/{ps.id}/ and {z.relative_to(ROOT)} built in {time.perf_counter() - t0:.1f}s")
    out = ROOT / "grading"
    for ps in sets:
        folder = DEMO / ps.id
        if refresh_class or not folder.exists():
            refresh(ps)
        print(f"\n== grading the demo class of {ps.id} ({len(list(folder.glob('*.ipynb')))} students) ==")
        graded = grade.grade_batch(ps, folder, out, jobs=jobs)
        print(grade.summary_table(graded, notebook.read(ps.source_notebook)))
        print(f"grades CSV: {(out / f'grades_{ps.id}.csv').relative_to(ROOT)}")
        print(f"feedback:   {(out / 'feedback' / ps.id).relative_to(ROOT)}/<student>/{ps.id}.html")
    print(f"\ngradebook: {grade.gradebook_url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(refresh_class="--refresh" in sys.argv))
