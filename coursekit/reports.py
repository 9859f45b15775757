"""What a TA gets from a problem set: the class CSV (LMS-ready), the feedback pages, the class
summary and the console table, all built from the gradebook (nbgrader's database, the one
source of truth: overrides, late penalties and other TAs' batches included).

Per student the gradebook gives the scores (nbgrader's ``manual_score`` over ``auto_score``),
the submission time and the override reasons; the details of a grading (failure messages,
flags, notes) come from the batch's saved result (``Outputs.saved_result``) when it matches
the gradebook's scores.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from . import gradebook
from .assignment import Assignment, Outputs
from .late import LatePolicy
from .scoring import Graded

NAME_COLUMNS = ("first_name", "last_name", "email")


class RosterError(ValueError):
    """The roster CSV cannot be used."""


def read_roster(path: Path | str) -> list[dict]:
    """Rows of a roster CSV: ``student_id`` and, when present, ``first_name``, ``last_name``
    (or one ``name`` column, split at its last space) and ``email``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if "student_id" not in (reader.fieldnames or []):
                raise RosterError(f"{path}: no student_id column (columns: {', '.join(reader.fieldnames or [])})")
            rows = list(reader)
    except OSError as exc:
        raise RosterError(f"cannot read roster {path}: {exc.strerror}") from exc
    people = []
    for r in rows:
        sid = (r.get("student_id") or "").strip()
        if not sid:
            continue
        p = {"student_id": sid, **{k: (r.get(k) or "").strip() for k in NAME_COLUMNS}}
        name = (r.get("name") or "").strip()
        if name and not (p["first_name"] or p["last_name"]):
            first, _, last = name.rpartition(" ")
            p["first_name"], p["last_name"] = (first, last) if first else ("", last)
        people.append(p)
    return people


@dataclass
class Row:
    """One student of the class for one problem set, as every report shows it."""

    student_id: str
    first_name: str
    last_name: str
    email: str
    submitted: bool
    submitted_at: dt.datetime | None
    late_by: dt.timedelta
    late_percent: float
    raw_total: float
    late_penalty: float
    max_total: float
    scores: dict[str, float]  # what counts: the override if any, else the autograder's
    auto_scores: dict[str, float]
    overrides: dict[str, tuple[float, str]]  # grade_id -> (score, reason)
    messages: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def total(self) -> float:
        return max(0.0, round(self.raw_total - self.late_penalty, 4))

    @property
    def status(self) -> str:
        if not self.submitted:
            return "no submission"
        if self.error:
            return "error"
        if self.flags:
            return "flagged"
        return "late" if self.late_by else "ok"

    @property
    def reason(self) -> str:
        """The one-line reason behind the status."""
        if not self.submitted:
            return "no submission"
        if self.error or self.flags:
            shown = [self.error] if self.error else self.flags[:3]
            more = len(self.flags) - (0 if self.error else len(shown))
            return "; ".join(shown) + (f" (+{more} more flag{'s' * (more > 1)})" if more > 0 else "")
        return f"late by {_duration(self.late_by)}" if self.late_by else ""

    @property
    def all_notes(self) -> list[str]:
        """Everything a TA should know about the row, for the CSV's ``notes`` column."""
        out = [] if self.submitted else ["no submission"]
        if self.late_by:
            out.append(f"late by {_duration(self.late_by)}: -{self.late_percent:g}% (-{self.late_penalty:g} points)")
        for gid, (score, reason) in self.overrides.items():
            out.append(f"override {gid}: {self.auto_scores.get(gid, 0):g} -> {score:g} ({reason})")
        flags = [f for f in self.flags if not (self.error and self.error in f)]  # "ungradable: <error>"
        return out + [f"flag: {f}" for f in flags] + self.notes


def _duration(d: dt.timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    return (f"{days}d " if days else "") + f"{rest // 60}h {rest % 60:02d}m"


def _num(x: float) -> str:
    return f"{round(x, 4):.10g}"


@dataclass
class Report:
    """The class of one problem set; ``not_graded``: (file or student, reason)."""

    a: Assignment
    rows: list[Row]
    policy: LatePolicy
    not_graded: list[tuple[str, str]]

    @property
    def submitted(self) -> list[Row]:
        return [r for r in self.rows if r.submitted]


def _saved(out: Outputs, sid: str) -> Graded | None:
    try:
        return Graded(**json.loads(out.saved_result(sid).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _row(a: Assignment, e: gradebook.Entry, saved: Graded | None, policy: LatePolicy) -> Row:
    auto = {gid: float(e.cells[gid].auto or 0.0) if gid in e.cells else 0.0 for gid in a.max_scores}
    scores = {gid: e.cells[gid].score if gid in e.cells else 0.0 for gid in a.max_scores}
    overrides = {gid: (c.manual, c.reason or "") for gid, c in e.cells.items()
                 if c.manual is not None and gid in a.max_scores}
    late = policy.late_by(e.timestamp, a.ps.due) if e.submitted else dt.timedelta(0)
    raw = float(sum(scores.values()))
    row = Row(e.student_id, e.first_name, e.last_name, e.email, e.submitted, e.timestamp, late, policy.percent(late),
              raw, policy.penalty(raw, late), float(sum(a.max_scores.values())), scores, auto, overrides)
    if saved is not None and e.submitted:
        if {k: float(v) for k, v in saved.scores.items()} == auto:
            row.messages, row.notes, row.error = dict(saved.messages), list(saved.notes), saved.error
            row.flags = [f for f in saved.flags if not f.startswith("late by")]  # lateness: from the gradebook
        else:
            row.notes = ["graded by another run (other output folder): messages are in its feedback"]
    return row


def build(a: Assignment, out: Outputs, gradebook_url: str, policy: LatePolicy | None = None) -> Report:
    """Read the class of ``a`` from the gradebook; store the late penalties it implies there
    (nbgrader's ``late_submission_penalty``, so that `nbgrader export` agrees)."""
    policy = policy or LatePolicy.of(a.ps)
    with gradebook.open_gradebook(gradebook_url) as gb:
        entries = gradebook.read_class(gb, a.id)
        rows = [_row(a, entries[sid], _saved(out, sid), policy) for sid in sorted(entries)]
        stale = {r.student_id: r.late_penalty for r in rows
                 if r.submitted and r.late_penalty != entries[r.student_id].late_penalty}
        if stale:
            gradebook.store_late_penalties(gb, a.id, stale)
    not_graded = [(r.student_id, r.error) for r in rows if r.submitted and r.error]
    try:
        not_graded += [tuple(x) for x in json.loads(out.not_graded.read_text())]
    except (OSError, ValueError):
        pass
    return Report(a, rows, policy, not_graded)


def remember_not_graded(out: Outputs, lines: list[str]) -> None:
    """Add a batch's files that belong to nobody ("name: reason") to the problem set's list."""
    try:
        known = [tuple(x) for x in json.loads(out.not_graded.read_text())]
    except (OSError, ValueError):
        known = []
    for line in lines:
        name, _, reason = line.partition(": ")
        if (name, reason) not in known:
            known.append((name, reason))
    out.root.mkdir(parents=True, exist_ok=True)
    _atomic(out.not_graded, json.dumps(known, indent=1))


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def csv_columns(a: Assignment) -> list[str]:
    return ["student_id", *NAME_COLUMNS, "submitted_at", "late_by_hours", "raw_total", "late_penalty", "total",
            "max", *a.max_scores, "status", "reason", "notes"]


def write_csv(report: Report, path: Path) -> None:
    """Every student of the gradebook (roster students included), one row each."""
    a = report.a
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(csv_columns(a))
        for r in report.rows:
            w.writerow([r.student_id, r.first_name, r.last_name, r.email,
                        r.submitted_at.isoformat(sep=" ", timespec="seconds") if r.submitted_at else "",
                        f"{r.late_by.total_seconds() / 3600:.2f}" if r.late_by else "0",
                        _num(r.raw_total), _num(r.late_penalty), _num(r.total), _num(r.max_total),
                        *[_num(r.scores[t]) for t in a.max_scores], r.status, r.reason, "; ".join(r.all_notes)])
    os.replace(tmp, path)


def publish(a: Assignment, out: Outputs, gradebook_url: str) -> Report:
    """Write the CSV, the feedback pages and the class summary of ``a`` from the gradebook."""
    from . import feedback, summary

    report = build(a, out, gradebook_url)
    write_csv(report, out.csv)
    feedback.write_all(report.submitted, a, out)
    summary.write(report, out)
    return report


def _status_text(g) -> str:
    status = getattr(g, "status", None) or ("error" if g.error else ("flagged" if g.flags else "ok"))
    why = g.error or (g.flags[0] if g.flags else "")
    if status in ("ok", "no submission"):
        return status
    if status == "late":
        return f"late ({_duration(g.late_by)}, -{g.late_percent:g}%)"
    return f"{status.upper()}: {why}"


def summary_table(graded: list, a: Assignment, width: int = 90) -> str:
    """The console table: one line per student (``Row`` or ``Graded``), a legend of the cells."""
    tests = list(a.max_scores)
    short = [f"q{i + 1}" for i in range(len(tests))]
    head = f"{'student':<18}" + "".join(f"{s:>5}" for s in short) + f"{'total':>8}  status"
    lines = [head, "-" * len(head)]
    for g in graded:
        status = _status_text(g)
        if len(status) > width:  # cut at a word, never mid-word
            status = status[:width - 4].rsplit(" ", 1)[0] + " ..."
        overridden = getattr(g, "overrides", {})
        lines.append(f"{g.student_id[:17]:<18}"
                     + "".join(f"{g.scores.get(t, 0):>4g}{'*' if t in overridden else ' '}" for t in tests)
                     + f"{g.total:>4g}/{g.max_total:g}  {status}")
    legend = textwrap.fill(", ".join(f"{s}={t}" for s, t in zip(short, tests)), width=120, break_on_hyphens=False)
    if any(getattr(g, "overrides", None) for g in graded):
        legend += "\n* a TA's override (see the CSV's notes)"
    return "\n".join(lines) + "\n\n" + legend
