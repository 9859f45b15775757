"""`make publish WEEK=n` or `DATE=YYYY-MM-DD`: the files of every problem set released by then, into dist/.

Week n is the n-th release date of `course.toml` (its distinct `release` dates in order). For each written
problem set released on or before that date: refuse it when the committed release/ is stale (differs from a
fresh `make release`: `release.check`) or `validate.validate` fails; otherwise write

    dist/psNN/psNN.zip                         the student bundle: release/psNN/'s files under psNN/
    dist/psNN/psNN-gradescope-autograder.zip   the otter autograder zip (`coursekit.autograder`) to upload

A refused problem set gets nothing new in dist/ (what an earlier publish wrote there is left alone).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import autograder, release, validate
from .assignment import Assignment
from .manifest import MANIFEST, ManifestError, ProblemSet, load
from .sandbox import Limits


@dataclass
class Outcome:
    """What `publish` did with one problem set: ``files`` written, or the ``reasons`` it was refused."""

    ps_id: str
    files: list[Path] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return not self.reasons


def release_dates(sets: list[ProblemSet]) -> list[dt.date]:
    """The course's distinct release dates in order: week n is ``release_dates(...)[n - 1]``."""
    return sorted({p.release for p in sets})


def cutoff(sets: list[ProblemSet], week: int | None = None, date: str | dt.date | None = None) -> dt.date:
    """The date publishing goes up to: the WEEK-th release date, or DATE. Exactly one must be given."""
    if (week is None) == (date is None):
        raise ManifestError("give one of WEEK=n (the n-th release date in course.toml) and DATE=YYYY-MM-DD")
    if week is not None:
        dates = release_dates(sets)
        if not 1 <= week <= len(dates):
            raise ManifestError(f"WEEK={week}: course.toml has {len(dates)} release dates (weeks 1-{len(dates)})")
        return dates[week - 1]
    if isinstance(date, dt.date):
        return date
    try:
        return dt.date.fromisoformat(str(date))
    except ValueError:
        raise ManifestError(f"DATE={date!r}: not a date (YYYY-MM-DD)") from None


def publish_one(ps: ProblemSet, paths=validate.PATHS, limits: Limits = Limits(), log=print) -> Outcome:
    """Check, validate and write one problem set's student bundle and Gradescope zip into dist/psNN/."""
    from .site import bundle  # the same byte-stable zip as the course website's download

    out = Outcome(ps.id)
    out.reasons = [f"stale release: {p}" for p in release.check(ps)]
    if out.reasons:
        return out
    log(f"{ps.id}: validating through {', '.join(paths)} ...")
    report = validate.validate(ps, paths=paths, limits=limits, log=log)
    if not report.ok:
        out.reasons = [f"validation failed: {p}" for p in report.problems]
        return out
    # validation through otter built and graded with autograder/psNN/autograder.zip: publish that one
    zip_path = ps.autograder_zip if "otter" in paths else autograder.build(Assignment.of(ps), limits)
    dist = ps.dist_dir
    dist.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dist.parent, prefix=f".{ps.id}-") as tmp:
        stage = Path(tmp) / ps.id  # written completely, then moved into place
        stage.mkdir()
        bundle(ps, stage / ps.student_bundle.name)
        shutil.copyfile(zip_path, stage / ps.gradescope_zip.name)
        if dist.exists():
            shutil.rmtree(dist)
        stage.rename(dist)
    out.files = [ps.student_bundle, ps.gradescope_zip]
    return out


def publish(day: dt.date, path: Path = MANIFEST, paths=validate.PATHS, limits: Limits = Limits(),
            log=print) -> list[Outcome]:
    """Publish every written problem set released on or before ``day``; the planned ones are reported."""
    outcomes = []
    for ps in load(path):
        if ps.release > day:
            continue
        if not ps.written:
            log(f"{ps.id}: released {ps.release} but planned (not written yet): not published")
            continue
        outcomes.append(publish_one(ps, paths, limits, log))
    return outcomes


def main(week: int | None = None, date: str | None = None, path: Path = MANIFEST, paths=validate.PATHS,
         limits: Limits = Limits(), log=print) -> int:
    """`coursekit publish`: 0 when every problem set released by then was published, 1 if one was refused."""
    day = cutoff(load(path), week, date)
    log(f"publishing the problem sets released by {day}" + (f" (week {week})" if week else ""))
    outcomes = publish(day, path, paths, limits, log)
    for o in outcomes:
        if o.published:
            log(f"{o.ps_id}: PUBLISHED " + ", ".join(str(f.relative_to(Path(path).resolve().parent)) for f in o.files))
        else:
            log(f"{o.ps_id}: REFUSED (nothing written to dist/ for it)")
            for r in o.reasons:
                log(f"  {r}")
    if not outcomes:
        log(f"no written problem set is released by {day}")
    return 0 if all(o.published for o in outcomes) else 1
