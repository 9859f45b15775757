"""What a batch reports: the class CSV and the console table."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .assignment import Assignment
from .scoring import Graded


def write_csv(graded: list[Graded], a: Assignment, path: Path) -> None:
    tests = list(a.max_scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "total", "max", *tests, "status", "reason"])
        for g in graded:
            status = "error" if g.error else ("flagged" if g.flags else "ok")
            reason = g.error or "; ".join(g.flags)
            w.writerow([g.student_id, f"{g.total:g}", f"{g.max_total:g}", *[f"{g.scores.get(t, 0):g}" for t in tests],
                        status, reason])
    os.replace(tmp, path)


def summary_table(graded: list[Graded], a: Assignment) -> str:
    tests = list(a.max_scores)
    short = [f"q{i + 1}" for i in range(len(tests))]
    head = f"{'student':<18}" + "".join(f"{s:>5}" for s in short) + f"{'total':>8}  status"
    lines = [head, "-" * len(head)]
    for g in graded:
        status = "ERROR: " + g.error if g.error else ("FLAGGED: " + g.flags[0] if g.flags else "ok")
        if len(status) > 90:  # cut at a word, never mid-word
            status = status[:90].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{g.student_id[:17]:<18}" + "".join(f"{g.scores.get(t, 0):>5g}" for t in tests)
                     + f"{g.total:>5g}/{g.max_total:g}  {status}")
    legend = ", ".join(f"{s}={t}" for s, t in zip(short, tests))
    return "\n".join(lines) + "\n\n" + legend
