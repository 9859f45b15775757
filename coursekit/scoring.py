"""The scoring rules: per graded cell, points from the cells' results, and what is flagged.

A test cell that ran to the end earns its points, unless the submission tampered with the
checks or did something forbidden before or during it. Flags (shown to TAs everywhere) and
notes (informational) are kept apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .assignment import Assignment
from .notebook import Cell
from .sandbox import CellResult, Status


@dataclass
class Graded:
    """The result of grading one student's submission."""

    student_id: str
    ps_id: str
    scores: dict[str, float]
    max_scores: dict[str, float]
    messages: dict[str, str] = field(default_factory=dict)  # grade_id -> why it failed
    flags: list[str] = field(default_factory=list)  # one-line reasons, shown everywhere
    notes: list[str] = field(default_factory=list)  # informational
    error: str | None = None  # the submission could not be graded at all
    seconds: float = 0.0  # wall time of grading it
    key: str = ""
    timestamp: str | None = None
    cell_seconds: float = 0.0  # the cells' own run time (setup, student code, tests)
    student_seconds: float = 0.0  # of which in the submission's own code

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def max_total(self) -> float:
        return float(sum(self.max_scores.values()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def ungraded(cls, a: Assignment, student_id: str, error: str, flags: list[str] | None = None) -> Graded:
        """Zero on every cell, with the reason the submission could not be graded."""
        return cls(student_id, a.id, {gid: 0.0 for gid in a.max_scores}, dict(a.max_scores), error=error,
                   flags=list(flags or []))


@dataclass
class Scored:
    scores: dict[str, float]
    messages: dict[str, str]
    flags: list[str]
    notes: list[str]


def _owner(r: CellResult, plan: dict[int, Cell] | None, course: set[str]) -> tuple[str, bool]:
    """Who wrote the cell of ``r``: (how to name it, whether it is the course's own cell).

    An unlabelled cell whose source equals one of the instructor notebook's unlabelled cells
    (a figure or demo cell, as released) is the course's, named by the exercise before it;
    any other is the student's. Without the plan that ran, an unlabelled cell is not attributed."""
    if r.grade_id:
        return r.grade_id, False
    if plan is None or r.index not in plan:
        return "an ungraded cell", False
    if plan[r.index].source.strip() not in course:
        return "a cell you added or changed", False
    before = [c.grade_id for i, c in sorted(plan.items()) if i < r.index and c.kind == "solution" and c.grade_id]
    exercise = before[-1].split("_")[0] if before else "the setup"
    if exercise[:2] == "ex" and exercise[2:].isdigit():
        exercise = f"exercise {exercise[2:]}"
    return f"the course's cell after {exercise}", True


def score(results: list[CellResult], a: Assignment, plan: list[Cell] | None = None) -> Scored:
    """Per-cell scores from one submission's cell results. ``plan``: the cells that ran
    (``assemble``'s plan; ``r.index`` is a position in it), to tell the student's own ungraded
    cells from the course's."""
    scores, messages, flags, notes = {}, {}, [], []
    seen_cheat = None  # the first forbidden action outside the tests: every later test gets 0
    by_index = None if plan is None else {c.index: c for c in plan}
    course = a.course_code
    for r in results:
        notes += [f"blocked: {m}" for sev, m in r.violations if sev != "forbidden"]
        if r.kind != "test":
            where, course_cell = _owner(r, by_index, course)
            if r.forbidden:
                seen_cheat = seen_cheat or r.forbidden[0]
                flags.append(f"suspicious: {r.forbidden[0]} (in {where}); later exercises get 0")
            if r.status.runaway:
                flags.append(f"runaway code in {where}: {r.status}")
            elif r.status == Status.FAILED and r.kind in ("solution", "code"):
                error = (r.error or "").splitlines()[0][:200] if r.error else ""
                if not (course_cell and error.startswith("NotImplementedError")):  # an unfinished exercise
                    notes.append(f"{where} raised {error}")
            continue
        gid = r.grade_id
        scores[gid] = 0.0
        if r.status == Status.TAMPERED:
            messages[gid] = "0 points: the checks were tampered with (" + "; ".join(r.tampered[:3]) + ")"
            flags.append(f"tampering in {gid}: {r.tampered[0]}")
        elif r.status == Status.BLOCKED:
            messages[gid] = f"0 points: {r.forbidden[0]}"
            flags.append(f"suspicious: {r.forbidden[0]} (during {gid})")
        elif seen_cheat:
            messages[gid] = f"0 points: earlier forbidden action ({seen_cheat})"
        elif r.ok:
            scores[gid] = r.points
        else:
            messages[gid] = r.error or str(r.status)
            if r.suspicious:
                flags.append(f"suspicious return value in {gid}: {r.suspicious.split('suspicious:', 1)[-1].strip()[:80]}")
            if r.status.runaway:
                flags.append(f"runaway code during {gid}: {r.status}")
    for gid in a.max_scores:
        if gid not in scores:
            scores[gid] = 0.0
            messages[gid] = "not run"
    return Scored(scores, messages, list(dict.fromkeys(flags)), list(dict.fromkeys(notes)))
