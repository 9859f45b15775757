"""Per-student feedback HTML: per graded cell, points and pass/fail with the error message.

Built from grading results, never from the executed instructor cells, so it cannot show
hidden tests: only the *public* part of a test cell is quoted, and any line of a hidden
test or of a solution that appears in a message (a submission may try to print them)
is redacted.
"""

from __future__ import annotations

import html
import os

from . import notebook
from .assignment import Assignment, Outputs


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, "[hidden test]")
    return text


def render(g, a: Assignment) -> str:
    """The page of one student: ``g`` is a `reports.Row` (or a `Graded`: no overrides, no lateness)."""
    secrets, ps = a.secrets, a.ps
    e = html.escape
    overrides = getattr(g, "overrides", {})
    rows = []
    for c in a.tests:
        got = g.scores.get(c.grade_id, 0.0)
        ok = got >= c.points and (not g.messages.get(c.grade_id) or c.grade_id in overrides)
        msg = redact(g.messages.get(c.grade_id, ""), secrets)
        if c.grade_id in overrides:
            score, reason = overrides[c.grade_id]
            auto = getattr(g, "auto_scores", {}).get(c.grade_id, 0.0)
            msg = f"Score set by a TA: {score:g} (autograder: {auto:g}). Reason: {reason}\n" + msg
        public = notebook.public_source(c.source).strip()
        hidden = " (+ hidden tests)" if c.hidden else ""
        rows.append(
            f"<tr class='{'pass' if ok else 'fail'}'><td><code>{e(c.grade_id)}</code>{e(hidden)}</td>"
            f"<td>{got:g} / {c.points:g}</td><td>{'passed' if ok else 'failed'}</td>"
            f"<td><pre>{e(msg)}</pre>"
            + ("" if ok else f"<details><summary>public test</summary><pre>{e(public)}</pre></details>")
            + "</td></tr>"
        )
    flags = "".join(f"<li>{e(redact(f, secrets))}</li>" for f in g.flags)
    notes = "".join(f"<li>{e(redact(n, secrets))}</li>" for n in g.notes)
    error = f"<p class='fail'><b>Not graded:</b> {e(g.error)}</p>" if g.error else ""
    penalty = getattr(g, "late_penalty", 0.0)
    late = (f"<p class='fail'>Submitted {g.submitted_at:%Y-%m-%d %H:%M}, after the due date ({ps.due:%Y-%m-%d %H:%M}): "
            f"-{g.late_percent:g}% late penalty, {g.raw_total:g} - {penalty:g} = {g.total:g} points.</p>"
            if penalty or getattr(g, "late_by", None) else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(ps.id)} feedback: {e(g.student_id)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{border-bottom:1px solid #ddd;
padding:.3em;vertical-align:top}} .pass td:nth-child(3){{color:#070}} .fail td:nth-child(3),.fail{{color:#a00}}
pre{{white-space:pre-wrap;margin:0}}</style></head><body>
<h1>{e(ps.id)} — {e(ps.title)}</h1>
<p>Student: <b>{e(g.student_id)}</b> &middot; Score: <b>{g.total:g} / {g.max_total:g}</b></p>
{error}
{late}
{'<h2>Flags</h2><ul>' + flags + '</ul>' if flags else ''}
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
<table><tr><th>graded cell</th><th>points</th><th>result</th><th>message</th></tr>
{''.join(rows)}
</table></body></html>
"""


def write_all(graded, a: Assignment, out: Outputs) -> None:
    for g in graded:
        path = out.feedback_page(g.student_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(render(g, a), encoding="utf-8")
        os.replace(tmp, path)
