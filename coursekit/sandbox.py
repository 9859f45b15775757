"""Run a list of cells for one submission in a limited child process (parent side).

Children are forked from a `multiprocessing` fork server that has already imported
numpy, torch, matplotlib and IPython, so a submission costs no interpreter start-up or
`import torch`. Each cell gets a soft timer in the child and a hard wall-clock kill here;
a child that dies (timeout, `os._exit`, killed kernel, memory) is replaced and the
remaining cells still run, so one runaway exercise costs only its own points.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import site
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import notebook

CHECKS_SOURCE = Path(__file__).resolve().parent / "checks.py"
PRELOAD = ["numpy", "numpy.testing", "torch", "torch.func", "torch.nn.functional", "matplotlib",
           "matplotlib.pyplot", "IPython.core.interactiveshell", "coursekit._child", "coursekit.checks"]


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. Times in seconds, sizes in bytes."""

    cell_timeout: float = 60.0
    grace: float = 5.0
    memory_bytes: int = 6 * 2**30
    output_tail_bytes: int = 2000
    output_limit_bytes: int = 16 * 2**20
    max_restarts: int = 3
    threads: int = 1
    startup_timeout: float = 120.0


@dataclass
class CellResult:
    index: int
    kind: str
    grade_id: str | None
    points: float
    status: str  # ok | error | timeout | crashed | not-run
    error: str | None = None
    seconds: float = 0.0
    output: str = ""
    violations: list = field(default_factory=list)  # [(severity, message)]
    tampered: list = field(default_factory=list)
    maxrss_kb: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


_CTX = None
_START_LOCK = threading.Lock()


def _context():
    global _CTX
    if _CTX is None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        ctx = mp.get_context("forkserver")
        root = str(Path(__file__).resolve().parent.parent)
        if root not in sys.path:
            sys.path.insert(0, root)
        ctx.set_forkserver_preload(PRELOAD)
        _CTX = ctx
    return _CTX


def allowed_read_paths() -> list[str]:
    # /proc and /dev are handled in the child: its own /proc entry only, harmless devices only
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/etc", "/sys", "/bin"}
    paths.update(site.getsitepackages())
    here = Path(__file__).resolve().parent
    paths.update({str(here / "_child.py"), str(here / "checks.py")})  # tracebacks may quote these
    return sorted(p for p in paths if p)


class _Child:
    def __init__(self, workdir: str, limits: Limits):
        ctx = _context()
        self.conn, child_conn = ctx.Pipe()
        req = {
            "workdir": workdir,
            "allowed_read": allowed_read_paths(),
            "memory_limit_bytes": limits.memory_bytes,
            "output_tail_bytes": limits.output_tail_bytes,
            "output_limit_bytes": limits.output_limit_bytes,
            "threads": limits.threads,
        }
        from . import _child

        self.proc = ctx.Process(target=_child.main, args=(child_conn, req), daemon=True)
        # children start from the preloaded fork server; keep them from re-importing __main__
        with _START_LOCK:
            main = sys.modules["__main__"]
            saved = {k: main.__dict__.pop(k) for k in ("__file__",) if k in main.__dict__}
            saved_spec, main.__spec__ = getattr(main, "__spec__", None), None
            try:
                self.proc.start()
            finally:
                main.__dict__.update(saved)
                main.__spec__ = saved_spec
        child_conn.close()
        self.pid = self.proc.pid
        hello = self._recv(limits.startup_timeout)
        if not isinstance(hello, dict) or not hello.get("ready"):
            self.kill()
            raise RuntimeError("grading process failed to start")

    def _recv(self, timeout: float):
        try:
            if not self.conn.poll(timeout):
                return None
            raw = self.conn.recv_bytes(maxlength=4 * 2**20)
            return json.loads(raw.decode("utf-8", "replace"))
        except (EOFError, OSError, ValueError):
            return "dead"

    def run(self, cell: notebook.Cell, timeout: float, grace: float):
        try:
            self.conn.send_bytes(json.dumps({"index": cell.index, "kind": cell.kind, "source": cell.source,
                                             "grade_id": cell.grade_id, "timeout": timeout}).encode())
        except (OSError, ValueError):
            return "dead"
        return self._recv(timeout + grace)

    def kill(self):
        for sig_target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                sig_target()
            except (ProcessLookupError, PermissionError, TypeError):
                pass
        self.proc.join(timeout=5)
        try:
            self.conn.close()
        except OSError:
            pass

    def stop(self):
        try:
            self.conn.send_bytes(b'{"cmd": "stop"}')
            self.proc.join(timeout=5)
        except (OSError, ValueError):
            pass
        self.kill()


def _valid_reply(reply, index: int) -> bool:
    return (isinstance(reply, dict) and reply.get("index") == index and isinstance(reply.get("ok"), bool)
            and isinstance(reply.get("violations", []), list) and isinstance(reply.get("tampered", []), list))


def run_cells(plan: list[notebook.Cell], files: dict[str, bytes] | None = None, limits: Limits = Limits(),
              on_cell=None) -> list[CellResult]:
    """Execute ``plan`` (code cells in order) in a fresh sandboxed child; one result per cell.

    files: extra files (name -> bytes) placed in the working directory; the authored
    comparison helper is always placed there as ``dlt_checks.py``.
    """
    workdir = tempfile.mkdtemp(prefix="dlt-grade-")
    os.chmod(workdir, 0o755)
    try:
        for name, data in (files or {}).items():
            (Path(workdir) / name).write_bytes(data)
        shutil.copyfile(CHECKS_SOURCE, Path(workdir) / "dlt_checks.py")
        results: list[CellResult] = []
        position, restarts = 0, 0
        child = _Child(workdir, limits)
        try:
            while position < len(plan):
                cell = plan[position]
                t0 = time.perf_counter()
                reply = child.run(cell, limits.cell_timeout, limits.grace)
                if _valid_reply(reply, cell.index):
                    status = "ok" if reply["ok"] else ("timeout" if str(reply.get("error", "")).startswith(
                        "TimeoutError: cell exceeded") else "error")
                    results.append(CellResult(
                        cell.index, cell.kind, cell.grade_id, cell.points, status, reply.get("error"),
                        float(reply.get("seconds", 0.0)), str(reply.get("output", ""))[: limits.output_tail_bytes * 2],
                        [tuple(v)[:2] for v in reply.get("violations", []) if isinstance(v, list)],
                        [str(t) for t in reply.get("tampered", [])],
                        int(reply.get("maxrss_kb", 0)) if isinstance(reply.get("maxrss_kb", 0), int) else 0))
                    position += 1
                    if on_cell:
                        on_cell(results[-1])
                    continue
                # no valid reply: timed out, died, or wrote garbage on the pipe
                elapsed = time.perf_counter() - t0
                if reply is None:
                    status, error = "timeout", f"TimeoutError: cell exceeded its time limit of {limits.cell_timeout:g} s"
                elif reply == "dead":
                    status, error = "crashed", "the grading process died while running this cell " \
                                               "(os._exit, a killed kernel, or memory exhausted)"
                else:
                    status, error = "crashed", "the cell corrupted the grader's channel"
                child.kill()
                results.append(CellResult(cell.index, cell.kind, cell.grade_id, cell.points, status, error, elapsed))
                if on_cell:
                    on_cell(results[-1])
                position += 1
                restarts += 1
                if restarts > limits.max_restarts or position >= len(plan):
                    break
                child = _Child(workdir, limits)
                for earlier in plan[: position - 1]:  # rebuild the state, skipping the cell that failed
                    again = child.run(earlier, limits.cell_timeout, limits.grace)
                    if not _valid_reply(again, earlier.index):
                        child.kill()
                        child = None
                        break
                if child is None:
                    break
            if child is not None:
                child.stop()
        finally:
            if child is not None:
                child.kill()
        for cell in plan[len(results):]:
            results.append(CellResult(cell.index, cell.kind, cell.grade_id, cell.points, "not-run",
                                      "not run: the grader stopped after repeated failures"))
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
