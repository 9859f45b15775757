"""Shared fixtures: the fixture course (one tiny problem set) copied to a scratch folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "course"
sys.path.insert(0, str(FIXTURE))  # the fixture's solutions module `ps00_toy`


@pytest.fixture(scope="session")
def toy_course(tmp_path_factory):
    """A copy of tests/fixtures/course with its release generated; returns the ProblemSet ps00."""
    from coursekit import manifest, release

    root = tmp_path_factory.mktemp("course")
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    ps = manifest.load(root / "course.toml")[0]
    release.build(ps)
    return ps


@pytest.fixture(scope="session")
def toy_nb(toy_course):
    from coursekit import notebook

    return notebook.read(toy_course.source_notebook)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Under xdist (`make test`), the tests of one file share their expensive module-level gradings, so
    they stay on one worker; the per-problem-set validations are independent and spread out."""
    for item in items:
        if item.path.name != "test_validate.py":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # the longest groups first, so that two workers finish together (xdist hands groups out in order)
    items.sort(key=lambda item: next((i for i, part in enumerate(HEAVY_FIRST) if part in item.path.as_posix()),
                                     len(HEAVY_FIRST)))


HEAVY_FIRST = ("toolkit/test_integrity.py", "toolkit/test_gradescope.py", "toolkit/test_scaffold.py",
               "toolkit/test_student_bundle.py", "toolkit/test_grade_robust.py", "toolkit/test_gradebook_db.py",
               "toolkit/test_reports.py", "tests/mutants/", "tests/e2e/", "toolkit/test_publish.py",
               "toolkit/test_validate.py", "toolkit/test_otter_limits.py", "toolkit/test_settings.py",
               "toolkit/test_demo.py", "toolkit/test_sandbox.py")
