"""The course manifest (`course.toml`): the eleven problem sets, and the one place that knows
where the course's files live (`ProblemSet`'s paths and `Layout`; a grading batch's output
folder is `assignment.Outputs`)."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "course.toml"
STATUSES = ("written", "planned")
HELPER_NAME = "dlt_checks.py"  # the comparison helper, as students and test cells import it
CHECKS_SOURCE = Path(__file__).resolve().parent / "checks.py"  # ... authored here


@dataclass(frozen=True)
class Layout:
    """The repository's top-level folders (authored: source, solutions, tests; generated:
    release, autograder, grading, bench, demo)."""

    root: Path = ROOT

    @property
    def grading(self) -> Path:  # default output folder of `make grade`
        return self.root / "grading"

    @property
    def demo(self) -> Path:  # the demo class (committed)
        return self.root / "demo"

    @property
    def demo_grading(self) -> Path:  # the demo's own output folder and gradebook
        return self.root / "grading" / "demo"

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def site_conf(self) -> Path:  # the course website's Sphinx configuration
        return self.root / "site"

    @property
    def site_out(self) -> Path:  # default output of `make site`
        return self.root / "build" / "site"

    @property
    def dist(self) -> Path:  # `make publish`: what goes to students and Gradescope (not committed)
        return self.root / "dist"

    @property
    def nbgrader_config(self) -> Path:
        return self.root / "nbgrader_config.py"

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    @property
    def lockfile(self) -> Path:
        return self.root / "requirements.lock"


class ManifestError(ValueError):
    """The manifest is malformed or a problem set id is unknown."""


@dataclass(frozen=True)
class ProblemSet:
    id: str
    title: str
    status: str
    release: dt.date
    due: dt.datetime
    points: int
    papers: tuple[str, ...]
    module: str | None = None
    root: Path = field(default=ROOT, compare=False, repr=False)

    @property
    def written(self) -> bool:
        return self.status == "written"

    @property
    def source_dir(self) -> Path:
        return self.root / "source" / self.id

    @property
    def source_notebook(self) -> Path:
        return self.source_dir / f"{self.id}.ipynb"

    @property
    def release_dir(self) -> Path:
        return self.root / "release" / self.id

    @property
    def release_notebook(self) -> Path:
        return self.release_dir / f"{self.id}.ipynb"

    @property
    def autograder_dir(self) -> Path:
        return self.root / "autograder" / self.id

    @property
    def autograder_zip(self) -> Path:
        return self.autograder_dir / "autograder.zip"

    @property
    def autograder_tests(self) -> Path:  # one otter test file per graded cell
        return self.autograder_dir / "tests"

    @property
    def autograder_config(self) -> Path:
        return self.autograder_dir / "otter_config.json"

    @property
    def autograder_references(self) -> Path:  # the tests' reference values (`make autograder`, `make grade`)
        return self.autograder_dir / "references.pkl"

    @property
    def autograder_requirements(self) -> Path:
        return self.autograder_dir / "requirements.txt"

    @property
    def topic(self) -> str | None:  # "solutions.ps01_intro" -> "ps01_intro"
        return self.module.rsplit(".", 1)[-1] if self.module else None

    @property
    def solution_file(self) -> Path | None:  # the reference module's file
        return self.root / (self.module.replace(".", "/") + ".py") if self.module else None

    @property
    def unit_tests(self) -> Path | None:  # tests of the reference module against independent oracles
        return self.root / "tests" / "solutions" / f"test_{self.topic}.py" if self.module else None

    @property
    def mutant_tests(self) -> Path:  # correct alternatives and plausible bugs, graded
        return self.root / "tests" / "mutants" / f"test_{self.id}_mutants.py"

    @property
    def dist_dir(self) -> Path:  # dist/psNN/: the published student bundle and Gradescope zip
        return Layout(self.root).dist / self.id

    @property
    def student_bundle(self) -> Path:  # the release folder as students download it
        return self.dist_dir / f"{self.id}.zip"

    @property
    def gradescope_zip(self) -> Path:  # the autograder zip to upload to Gradescope
        return self.dist_dir / f"{self.id}-gradescope-autograder.zip"

    @property
    def demo_dir(self) -> Path:
        return Layout(self.root).demo / self.id

    @property
    def layout(self) -> Layout:
        return Layout(self.root)


def _date(value, what: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ManifestError(f"{what}: not an ISO date: {value!r}") from exc


def _datetime(value, what: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ManifestError(f"{what}: not an ISO date-time: {value!r}") from exc


def load(path: Path = MANIFEST) -> list[ProblemSet]:
    """Parse and check the manifest; returns the problem sets in course order."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    out: list[ProblemSet] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("problem_set", [])):
        where = f"{Path(path).name}: problem_set #{i + 1}"
        missing = {"id", "title", "status", "release", "due", "points", "papers"} - set(entry)
        if missing:
            raise ManifestError(f"{where}: missing {sorted(missing)}")
        ps_id = entry["id"]
        if ps_id in seen:
            raise ManifestError(f"{where}: duplicate id {ps_id}")
        seen.add(ps_id)
        if entry["status"] not in STATUSES:
            raise ManifestError(f"{where} ({ps_id}): status must be one of {STATUSES}")
        ps = ProblemSet(
            id=ps_id,
            title=entry["title"],
            status=entry["status"],
            release=_date(entry["release"], f"{ps_id}.release"),
            due=_datetime(entry["due"], f"{ps_id}.due"),
            points=int(entry["points"]),
            papers=tuple(entry["papers"]),
            module=entry.get("module"),
            root=Path(path).resolve().parent,
        )
        if ps.written and not ps.module:
            raise ManifestError(f"{ps_id}: a written problem set needs `module`")
        if ps.due.date() < ps.release:
            raise ManifestError(f"{ps_id}: due {ps.due} before release {ps.release}")
        out.append(ps)
    if not out:
        raise ManifestError(f"{path}: no problem sets")
    return out


def select(spec: str | None = None, *, written_only: bool = True, path: Path = MANIFEST) -> list[ProblemSet]:
    """The problem sets named by ``spec`` ("ps01", "ps01,ps02" or empty for all).

    With ``written_only``, asking for a planned problem set by name is an error, and
    "all" means all written ones.
    """
    sets = load(path)
    by_id = {p.id: p for p in sets}
    if not spec:
        return [p for p in sets if p.written or not written_only]
    chosen = []
    for name in spec.replace(",", " ").split():
        if name not in by_id:
            raise ManifestError(f"unknown problem set {name!r}; known: {', '.join(by_id)}")
        if written_only and not by_id[name].written:
            raise ManifestError(f"{name} is listed in course.toml but not written yet (status = planned)")
        chosen.append(by_id[name])
    return chosen


def get(ps_id: str, path: Path = MANIFEST) -> ProblemSet:
    return select(ps_id, written_only=False, path=path)[0]
