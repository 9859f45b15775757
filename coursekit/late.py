"""The late policy of `course.toml`: how many points a late submission loses.

``[course]`` sets it for every problem set; a ``[[problem_set]]`` entry may override any key::

    [course]
    late_penalty_per_day = 10   # percent of the points earned, per started day late
    late_penalty_cap = 50       # percent, at most
    late_grace_minutes = 15     # this late is on time

A submission ``late`` after the due date (beyond the grace period) loses
``min(cap, per_day * ceil(late / 1 day))`` percent of its raw total. Without these keys
nothing is deducted (late submissions are still reported).
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass

from .manifest import MANIFEST, ManifestError, ProblemSet

KEYS = ("late_penalty_per_day", "late_penalty_cap", "late_grace_minutes")


@dataclass(frozen=True)
class LatePolicy:
    per_day: float = 0.0  # percent of the raw total per started day
    cap: float = 100.0  # percent
    grace_minutes: float = 0.0

    def __post_init__(self):
        if not (0 <= self.per_day <= 100 and 0 <= self.cap <= 100 and self.grace_minutes >= 0):
            raise ManifestError(f"late policy out of range: {self}; per day and cap are percentages (0-100), "
                                "grace is minutes >= 0")

    @classmethod
    def of(cls, ps: ProblemSet) -> LatePolicy:
        """The policy of ``ps``: its own ``late_*`` keys over ``[course]``'s over none."""
        path = ps.root / MANIFEST.name
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ManifestError(f"cannot read {path}: {exc}") from exc
        values = {k: v for k, v in data.get("course", {}).items() if k in KEYS}
        for entry in data.get("problem_set", []):
            if entry.get("id") == ps.id:
                values.update({k: v for k, v in entry.items() if k in KEYS})
        try:
            return cls(per_day=float(values.get("late_penalty_per_day", 0)),
                       cap=float(values.get("late_penalty_cap", 100)),
                       grace_minutes=float(values.get("late_grace_minutes", 0)))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: late policy keys must be numbers: {values}") from exc

    def late_by(self, submitted: dt.datetime | None, due: dt.datetime) -> dt.timedelta:
        """How late ``submitted`` is (zero when on time, unknown or within the grace period)."""
        if submitted is None:
            return dt.timedelta(0)
        late = submitted - due
        return late if late > dt.timedelta(minutes=self.grace_minutes) else dt.timedelta(0)

    def percent(self, late: dt.timedelta) -> float:
        if late <= dt.timedelta(0):
            return 0.0
        return min(self.cap, self.per_day * math.ceil(late / dt.timedelta(days=1)))

    def penalty(self, raw_total: float, late: dt.timedelta) -> float:
        """Points deducted from ``raw_total``."""
        return round(raw_total * self.percent(late) / 100, 4)

    def describe(self) -> str:
        if not self.per_day:
            return "no late penalty"
        grace = f" after {self.grace_minutes:g} min grace" if self.grace_minutes else ""
        return f"-{self.per_day:g}% per started day late{grace}, at most -{self.cap:g}%"
