"""`make publish WEEK=n | DATE=...`: bundles and Gradescope zips of the sets released by then, refusing any
set whose validation fails or whose committed release is stale. Run on a copy of the fixture course."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile

import nbformat
import pytest

from coursekit import manifest, publish, release
from coursekit.manifest import ManifestError

EXTRA = '''
[[problem_set]]
id = "{id}"
title = "Copy of the toy set ({what})"
module = "ps00_toy"
status = "{status}"
release = "{release}"
due = "{due}T23:59:00"
points = 10
papers = []
'''
# ps00 (2027-01-04) good; ps01 (01-11) a test cell that passes on the stub; ps02 (01-18) source changed after
# its release; ps03 (01-18) planned; ps04 (02-01) good but released after the cut-off
EXTRAS = [("ps01", "broken", "written", "2027-01-11", "2027-01-18"), ("ps02", "stale", "written", "2027-01-18", "2027-01-25"),
          ("ps03", "planned", "planned", "2027-01-18", "2027-01-25"), ("ps04", "later", "written", "2027-02-01", "2027-02-08")]


@pytest.fixture(scope="module")
def course(toy_course, tmp_path_factory):
    """The fixture course with four more sets (copies of ps00); returns the manifest path."""
    root = tmp_path_factory.mktemp("publish") / "course"
    shutil.copytree(toy_course.root, root)
    toml = root / "course.toml"
    toml.write_text(toml.read_text() + "".join(EXTRA.format(id=i, what=w, status=s, release=r, due=d)
                                               for i, w, s, r, d in EXTRAS))
    src = nbformat.read(str(toy_course.source_notebook), as_version=4)
    for ps_id in ("ps01", "ps02", "ps04"):
        nb = nbformat.from_dict(src)
        for c in nb.cells:
            if ps_id == "ps01" and c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex1_double_shape":
                c.source = '"""Checks nothing about the student."""\nassert_close(np.ones(3), np.ones(3))'
        (root / "source" / ps_id).mkdir(parents=True)
        nbformat.write(nb, str(root / "source" / ps_id / f"{ps_id}.ipynb"))
        mutants = root / "tests" / "mutants"
        shutil.copyfile(mutants / "test_ps00_mutants.py", mutants / f"test_{ps_id}_mutants.py")
    sets = {p.id: p for p in manifest.load(toml)}
    for ps_id in ("ps01", "ps02"):
        release.build(sets[ps_id])
    stale = sets["ps02"].source_notebook
    nb = nbformat.read(str(stale), as_version=4)
    nb.cells[0].source += "\nEdited after the release."
    nbformat.write(nb, str(stale))
    return toml


def test_week_n_is_the_nth_release_date(course):
    sets = manifest.load(course)
    assert publish.release_dates(sets) == [dt.date(2027, 1, d) for d in (4, 11, 18)] + [dt.date(2027, 2, 1)]
    assert publish.cutoff(sets, week=3) == dt.date(2027, 1, 18)
    assert publish.cutoff(sets, date="2027-01-12") == dt.date(2027, 1, 12)
    with pytest.raises(ManifestError, match=r"WEEK=5: course.toml has 4 release dates \(weeks 1-4\)"):
        publish.cutoff(sets, week=5)
    with pytest.raises(ManifestError, match="give one of WEEK=n"):
        publish.cutoff(sets)
    with pytest.raises(ManifestError, match="DATE='18.01.2027': not a date"):
        publish.cutoff(sets, date="18.01.2027")


@pytest.mark.slow
def test_publish_refuses_a_broken_or_stale_set_and_publishes_the_good_one(course):
    root = course.parent
    lines = []
    # validating through coursekit only keeps the test cheap; `make publish` validates through nbgrader and otter too
    rc = publish.main(week=3, path=course, paths=("coursekit",), log=lines.append)
    text = "\n".join(lines)
    assert rc == 1, text
    assert "ps00: PUBLISHED dist/ps00/ps00.zip, dist/ps00/ps00-gradescope-autograder.zip" in text
    assert "ps01: REFUSED (nothing written to dist/ for it)" in text
    assert "validation failed: ps01: ex1_double_shape does not fail on the released stub via coursekit" in text
    assert "ps02: REFUSED" in text and "stale release: ps02: out of date: ps02.ipynb (run `make release PS=ps02`)" in text
    assert "ps03: released 2027-01-18 but planned (not written yet): not published" in text
    assert "ps04" not in text  # released after week 3
    assert sorted(p.name for p in (root / "dist").iterdir()) == ["ps00"]
    ps00 = manifest.load(course)[0]
    with zipfile.ZipFile(ps00.student_bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    assert files == {f"ps00/{f.name}": f.read_bytes() for f in ps00.release_dir.iterdir() if f.is_file()}
    assert b"default_rng(0)" not in files["ps00/ps00.ipynb"]  # the hidden test stays hidden
    with zipfile.ZipFile(ps00.gradescope_zip) as z:
        names = set(z.namelist())
    assert {"otter_config.json", "coursekit/otter_plugin.py", "tests/ex1_double_values.py"} <= names
