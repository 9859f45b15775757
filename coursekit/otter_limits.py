"""Otter plugin: grade under `otter run` exactly as `make grade` does.

Before execution it rebuilds the submission the way `coursekit.assemble` does for
`make grade`: the instructor's setup cells and cell order, the student's own code, and at
the place of each graded cell a placeholder that makes otter run that cell's test right
there (not at the end, where later cells may have changed the names a test uses).

``otter run`` has no timeout at all: the first cell caps the kernel's address space and arms
a timer around every cell (a cell over its limit raises ``TimeoutError``); a watchdog thread
kills the kernel outright if a cell ignores the timer for ``grace`` more seconds.
"""

from __future__ import annotations

import nbformat

try:
    from otter.plugins import AbstractOtterPlugin
except ImportError:  # pragma: no cover -- only used inside otter
    AbstractOtterPlugin = object

LIMITS_CELL = '''\
def __dlt_install_limits(cell_timeout={cell_timeout!r}, grace={grace!r}, memory_bytes={memory_bytes!r}):
    import os, resource, signal, threading, time
    for heavy in ("numpy", "torch", "matplotlib.pyplot"):  # their address space is not the student's
        try:
            __import__(heavy)
        except ImportError:
            pass
    with open("/proc/self/status") as f:
        vm = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")), 0)
    cap = vm + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    state = {{"start": None}}
    import builtins
    builtins.__dlt_limits_state__ = state  # otter's test cases restart the clock per test

    def on_alarm(signum, frame):
        raise TimeoutError("cell exceeded its time limit")

    signal.signal(signal.SIGALRM, on_alarm)

    def pre(*args):
        state["start"] = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)

    def post(*args):
        signal.setitimer(signal.ITIMER_REAL, 0)
        state["start"] = None

    def watchdog():
        while True:
            time.sleep(0.5)
            t = state["start"]
            if t is not None and time.monotonic() - t > cell_timeout + grace:
                os.kill(os.getpid(), signal.SIGKILL)

    ip = get_ipython()
    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)
    threading.Thread(target=watchdog, daemon=True).start()


__dlt_install_limits()
del __dlt_install_limits
'''


class LimitsPlugin(AbstractOtterPlugin):
    """Configured in otter_config.json: cell_timeout (s), grace (s), memory_bytes, and ``plan``
    (the released notebook, whose structure the submission is graded against)."""

    def before_execution(self, submission):
        if not isinstance(submission, nbformat.NotebookNode):
            return submission
        cfg = {"cell_timeout": 60.0, "grace": 5.0, "memory_bytes": 6 * 2**30}
        cfg.update(self.plugin_config or {})
        plan = cfg.pop("plan", None)
        cells = []
        if plan is not None:
            import json

            from coursekit import assemble

            built = assemble.assemble(nbformat.reads(json.dumps(plan), as_version=4), submission)
            for c in built.plan:
                if c.kind == "test":
                    cell = nbformat.v4.new_code_cell(f"# graded cell {c.grade_id}: otter runs its test here")
                    cell.metadata["otter"] = {"tests": [c.grade_id]}
                else:
                    cell = nbformat.v4.new_code_cell(c.source)
                cells.append(cell)
            submission.cells = cells
        limits = nbformat.v4.new_code_cell(LIMITS_CELL.format(**cfg))
        limits.metadata["tags"] = ["dlt-limits"]
        submission.cells.insert(0, limits)
        for i, cell in enumerate(submission.cells):
            cell["id"] = f"dlt-{i:04d}"
        return submission
