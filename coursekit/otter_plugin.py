"""Otter plugin: under `otter run` (and on Gradescope) a submission is graded by this project's
own grader, with the same integrity as `make grade`.

Before otter executes anything, the plugin builds the grading plan from the submission
(`coursekit.assemble`: the instructor's setup and test cells, the student's own code), runs it
with `coursekit.sandbox` -- student code in an untrusted process, every test cell and verdict in
a trusted one, with the time and memory limits of `make grade` -- and scores it with
`coursekit.scoring.score`. The notebook otter then executes holds no student code at all: one cell
with the verdicts, and one placeholder per graded cell where otter runs that cell's test, which
only reads its verdict. Messages are redacted like the feedback pages.
"""

from __future__ import annotations

import json

import nbformat

try:
    from otter.plugins import AbstractOtterPlugin
except ImportError:  # pragma: no cover -- only used inside otter
    AbstractOtterPlugin = object

VERDICTS = "__dlt_verdicts__"


def verdicts(plan_nb, submission, limits) -> dict[str, dict]:
    """grade_id -> {"ok", "message"} for ``submission`` graded against ``plan_nb``."""
    from coursekit import assemble, feedback, sandbox
    from coursekit.assignment import Assignment
    from coursekit.scoring import score

    a = Assignment(None, plan_nb)
    built = assemble.assemble(a, submission)
    s = score(sandbox.run_cells(built.plan, limits=limits), a)
    out = {}
    for t in a.tests:
        ok = s.scores.get(t.grade_id, 0.0) >= t.points and not s.messages.get(t.grade_id)
        message = feedback.redact(s.messages.get(t.grade_id, "") or "failed", a.secrets)
        out[t.grade_id] = {"ok": bool(ok), "message": message[:2000]}
    if s.flags:
        out["__flags__"] = {"ok": False, "message": feedback.redact("; ".join(s.flags), a.secrets)[:2000]}
    return out


def limits_from(cfg: dict):
    """The grading limits the zip was built with (`make autograder`'s CELL_TIMEOUT, MEMORY_GB)."""
    from coursekit import sandbox

    return sandbox.Limits(**{k: cfg[k] for k in ("cell_timeout", "grace", "memory_bytes") if k in cfg})


class GradingPlugin(AbstractOtterPlugin):
    """Configured in otter_config.json: ``plan`` (the grading plan: the released notebook whose test
    cells carry the instructor's hidden tests) and the limits (cell_timeout, grace, memory_bytes)."""

    def before_execution(self, submission):
        if not isinstance(submission, nbformat.NotebookNode):
            return submission

        cfg = dict(self.plugin_config or {})
        plan_nb = nbformat.reads(json.dumps(cfg.pop("plan")), as_version=4)
        limits = limits_from(cfg)
        try:
            found = verdicts(plan_nb, submission, limits)
        except Exception as exc:  # noqa: BLE001 -- an ungradable submission scores 0 with its reason
            found = {"__error__": {"ok": False, "message": f"not graded: {type(exc).__name__}: {exc}"[:500]}}
        cells = [nbformat.v4.new_code_cell(f"{VERDICTS} = {json.dumps(found)!r}\n"
                                           f"import json as _json\n{VERDICTS} = _json.loads({VERDICTS})")]
        from coursekit import notebook

        for t in notebook.test_cells(plan_nb):
            cell = nbformat.v4.new_code_cell(f"# graded cell {t.grade_id}: otter reads its verdict here")
            cell.metadata["otter"] = {"tests": [t.grade_id]}
            cells.append(cell)
        for i, cell in enumerate(cells):
            cell["id"] = f"dlt-{i:04d}"
        submission.cells = cells
        return submission
