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
import time
from pathlib import Path

import nbformat

from . import autograder, batch, gradebook, notebook, release, reports
from .assignment import Assignment, Outputs
from .manifest import Layout, ProblemSet, select
from .settings import Settings
from .validate import instructor_submission, partial_submission

CHEAT = ("import numpy as np\nimport dlt_checks\n"
         "np.allclose = lambda *a, **k: True\n"
         "dlt_checks.assert_close = lambda *a, **k: None\n"
         "assert_close = lambda *a, **k: None\n")


def make_class(ps: ProblemSet) -> dict[str, object]:
    """Student id -> notebook of the demo class of ``ps``."""
    a = Assignment.of(ps)
    stub = a.release_nb()
    full = instructor_submission(a, stub)
    carol = partial_submission(a, stub)
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
    folder = ps.demo_dir
    folder.mkdir(parents=True, exist_ok=True)
    for student, nb in make_class(ps).items():
        nbformat.write(nb, str(folder / f"{student}.ipynb"))
    return folder


def main(settings: Settings | None = None, refresh_class: bool = False, layout: Layout = Layout()) -> int:
    """Build every written problem set and grade its demo class into the demo's own output folder
    and gradebook (``grading/demo/``), never the real class's."""
    settings = (settings or Settings()).replace(out=layout.demo_grading, db=None)
    sets = select(None)
    for ps in sets:
        t0 = time.perf_counter()
        release.build(ps)
        z = autograder.build(Assignment.of(ps), settings.limits)
        print(f"{ps.id}: release/{ps.id}/ and {z.relative_to(layout.root)} built in {time.perf_counter() - t0:.1f}s")
    for ps in sets:
        a = Assignment.of(ps)
        folder = ps.demo_dir
        if refresh_class or not folder.exists():
            refresh(ps)
        print(f"\n== grading the demo class of {ps.id} ({len(list(folder.glob('*.ipynb')))} students) ==")
        graded = batch.grade_batch(a, folder, settings)
        out = Outputs(settings.out_dir, ps.id)
        print(reports.summary_table(graded, a))
        print(f"grades CSV: {out.csv.relative_to(layout.root)}")
        print(f"feedback:   {Path(out.feedback_pattern).relative_to(layout.root)}")
    print(f"\ngradebook: {gradebook.shown_url(settings.gradebook_url)}")
    return 0
