"""Otter plugin: under `otter run` (and on Gradescope) a submission is graded by this project's
own grader, with the same integrity as `make grade`.

Before otter executes anything, the plugin grades the submitted file exactly as `make grade`
does (`batch.grade_file`: student code in an untrusted process, every test cell and verdict in a
trusted one, the same limits and scoring). The notebook otter then executes holds no student
code at all: one cell with the verdicts, and one placeholder per graded cell where otter runs
that cell's two test cases, which only read its verdicts:

- "public tests" (0 points, visible to students at once): the verdict of the public part of the
  cell. The trusted side reports the line of the test cell that failed (`CellResult.line`); a
  failure on a line of the hidden tests means the public part passed, and its message is never
  shown here.
- "all tests" (the cell's points, hidden tests included): shown on Gradescope only once the
  grades are published (``show_hidden``: visibility "after_published").

Messages are the grader's own one-line reasons, redacted like the feedback pages; `after_grading`
puts them in place of otter's traceback excerpt. `run_gradescope` is the zip's entry point: a file
that is not a notebook gets `make grade`'s one-line reason instead of otter's traceback.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import nbformat

from .notebook import hidden_lines  # noqa: F401 -- used below, and by tests as otter_plugin.hidden_lines

try:
    from otter.plugins import AbstractOtterPlugin
except ImportError:  # pragma: no cover -- only used inside otter
    AbstractOtterPlugin = object

VERDICTS = "__dlt_verdicts__"
PUBLIC_CASE = "public tests"  # the test case names of each graded cell's otter test
ALL_CASE = "all tests (hidden included)"
PENDING = "points and the hidden tests' results are shown when the grades are published"


def public_verdict(cell, result, ok: bool, message: str) -> tuple[bool, str]:
    """(passed, message) of the public part of test ``cell`` (`notebook.Cell`, instructor source)
    whose whole verdict is (``ok``, ``message``); ``result``: its `sandbox.CellResult` or None."""
    from coursekit.sandbox import Status

    if ok:
        return True, ""
    if not cell.hidden or result is None or result.ok or result.status in (Status.TAMPERED, Status.BLOCKED):
        return False, message  # no hidden tests, or a reason of the grader's own (not the test's text)
    if result.line is None:  # the test's own code was not running: a reason of the grader's own
        return False, message
    if result.line in hidden_lines(cell.source):
        return True, ""
    return False, message


def verdicts(a, graded, results) -> dict[str, dict]:
    """grade_id -> {"ok", "message", "public_ok", "public_message"} from `batch.grade_file`'s
    (``graded``, ``results``) for assignment ``a``; "__flags__" and "__notes__" for the TAs."""
    from coursekit import feedback

    by_gid = {r.grade_id: r for r in results if r.kind == "test"}
    out = {}
    for t in a.tests:
        if graded.error:
            ok, message = False, f"not graded: {graded.error}"
        else:
            ok = graded.scores.get(t.grade_id, 0.0) >= t.points and not graded.messages.get(t.grade_id)
            message = graded.messages.get(t.grade_id, "") or ("" if ok else "failed")
        message = feedback.redact(message, a.secrets)[:2000]
        public_ok, public_message = public_verdict(t, by_gid.get(t.grade_id), ok, message)
        out[t.grade_id] = {"ok": bool(ok), "message": message, "public_ok": public_ok,
                           "public_message": public_message}
    out["__flags__"] = [feedback.redact(f, a.secrets)[:500] for f in graded.flags]
    out["__notes__"] = [feedback.redact(n, a.secrets)[:500] for n in graded.notes]
    return out


def limits_from(cfg: dict):
    """The grading limits the zip was built with (`make autograder`'s CELL_TIMEOUT, MEMORY_GB)."""
    from coursekit import sandbox

    return sandbox.Limits(**{k: cfg[k] for k in ("cell_timeout", "grace", "memory_bytes") if k in cfg})


def _case_message(passed: bool, reason: str) -> str:
    return "passed" if passed else f"failed: {reason or 'failed'}"


class GradingPlugin(AbstractOtterPlugin):
    """Configured in otter_config.json: ``plan`` (the grading plan: the released notebook whose test
    cells carry the instructor's hidden tests) and the limits (cell_timeout, grace, memory_bytes)."""

    found: dict | None = None

    def before_execution(self, submission):
        if not isinstance(submission, nbformat.NotebookNode):
            return submission
        from coursekit import batch, notebook
        from coursekit.assignment import Assignment

        cfg = dict(self.plugin_config or {})
        plan_nb = nbformat.reads(json.dumps(cfg.pop("plan")), as_version=4)
        a = Assignment(None, plan_nb)
        graded, results = batch.grade_file(a, Path(self.submission_path), "submission", limits_from(cfg))
        self.found = verdicts(a, graded, results)
        cells = [nbformat.v4.new_code_cell(f"{VERDICTS} = {json.dumps(self.found)!r}\n"
                                           f"import json as _json\n{VERDICTS} = _json.loads({VERDICTS})")]
        for t in notebook.test_cells(plan_nb):
            cell = nbformat.v4.new_code_cell(f"# graded cell {t.grade_id}: otter reads its verdict here")
            cell.metadata["otter"] = {"tests": [t.grade_id]}
            cells.append(cell)
        for i, cell in enumerate(cells):
            cell["id"] = f"dlt-{i:04d}"
        submission.cells = cells
        return submission

    def after_grading(self, results):
        """Each test case's message: the grader's reason (not otter's excerpt of the test file);
        a short visible note; the flags and notes in the autograder output (TAs only)."""
        if not self.found:
            return
        for name, test_file in results.results.items():
            v = self.found.get(name)
            if not v:
                continue
            test_file.test_case_results = [
                replace(tcr, message=_case_message(tcr.passed, v["public_message"] if tcr.test_case.name == PUBLIC_CASE
                                                   else v["message"]))
                for tcr in test_file.test_case_results]
        public = [v["public_ok"] for k, v in self.found.items() if not k.startswith("__")]
        results.set_output(f"Public tests passed in {sum(public)} of {len(public)} graded cells; {PENDING}.")
        for line in [f"flag: {f}" for f in self.found["__flags__"]] + [f"note: {n}" for n in self.found["__notes__"]]:
            print(line)


def ungradable_results(reason: str) -> dict:
    """Gradescope's results.json for a submission that cannot be graded: 0, with the reason."""
    return {"score": 0, "output": f"Not graded: {reason}", "stdout_visibility": "hidden",
            "tests": [{"name": "Submission", "status": "failed", "visibility": "visible",
                       "output": f"not graded: {reason}"}]}


def run_gradescope(autograder_dir: str = "/autograder") -> None:
    """The zip's run_otter.py: check the submitted file as `make grade` does, then grade it with
    otter (and so this plugin). ``autograder_dir``: Gradescope's /autograder (source/ holds the zip,
    submission/ the student's files, results/ receives results.json)."""
    from coursekit import assemble

    ag = Path(autograder_dir)
    found = sorted((ag / "submission").glob("*.ipynb"))
    reason = None
    if len(found) != 1:
        reason = "no notebook (.ipynb) submitted" if not found else f"{len(found)} notebooks submitted; submit one"
    else:
        try:
            assemble.load(found[0])
        except assemble.SubmissionError as exc:
            reason = str(exc)
    if reason:
        (ag / "results").mkdir(parents=True, exist_ok=True)
        (ag / "results" / "results.json").write_text(json.dumps(ungradable_results(reason), indent=1))
        print(f"not graded: {reason}")
        return
    from otter.run.run_autograder import main

    main(str(ag))


if __name__ == "__main__":  # python -m coursekit.otter_plugin [/autograder]
    run_gradescope(*sys.argv[1:2])
