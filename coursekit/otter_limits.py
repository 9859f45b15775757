"""Otter plugin: the same per-cell time limit and memory limit as `make grade`, under `otter run`.

``otter run`` executes a notebook with no timeout at all. Before execution this plugin puts a
cell first in the submission that, inside the kernel, caps the address space and arms a
timer around every cell (a cell over its limit raises ``TimeoutError``); a watchdog thread
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
    """Configured in otter_config.json: cell_timeout (s), grace (s), memory_bytes."""

    def before_execution(self, submission):
        if not isinstance(submission, nbformat.NotebookNode):
            return submission
        cfg = {"cell_timeout": 60.0, "grace": 5.0, "memory_bytes": 6 * 2**30}
        cfg.update(self.plugin_config or {})
        cell = nbformat.v4.new_code_cell(LIMITS_CELL.format(**cfg))
        cell.metadata["tags"] = ["dlt-limits"]
        submission.cells.insert(0, cell)
        return submission
