"""Grade one submission's cells: the grader's side of the two grading processes.

For each submission two processes are forked from a `multiprocessing` fork server that has
already imported numpy, torch, matplotlib and IPython (and was started with a minimal
environment): the untrusted child (`_child`, the student's code) and the trusted process
(`_trusted`, every test cell and verdict), joined by a socket pair. This side talks only to the
trusted process; the trusted process owns the child's deadlines and kills it when a call runs
away. A pair that loses its child is replaced, the earlier cells are replayed, and the remaining
cells still run, so one runaway exercise costs only its own points.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import functools
import importlib.util
import marshal
import multiprocessing as mp
import os
import pickle
import py_compile
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
from .manifest import CHECKS_SOURCE, HELPER_NAME

PRELOAD = ["numpy", "numpy.testing", "torch", "torch.func", "torch.nn.functional", "torch._dynamo", "matplotlib",
           "matplotlib.pyplot", "IPython.core.interactiveshell",
           "IPython.core.completer", "IPython.core.completerlib", "IPython.core.magics", "IPython.core.application",
           "IPython.core.oinspect", "traitlets.config", "threadpoolctl", "cloudpickle", "coursekit._child", "coursekit._trusted",
           "coursekit.wire", "coursekit.checks"]


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. Times in seconds, sizes in bytes."""

    cell_timeout: float = 60.0
    grace: float = 5.0
    memory_bytes: int = 6 * 2**30
    output_limit_bytes: int = 16 * 2**20
    max_restarts: int = 3
    threads: int = 1
    startup_timeout: float = 120.0


class Status(enum.StrEnum):
    """How a cell ended, as the trusted process saw it (compares equal to its value)."""

    PASSED = "passed"  # ran without error
    FAILED = "failed"  # raised (a failed test, or an error in student code)
    TIMEOUT = "timeout"  # ran past its time limit and was stopped
    DIED = "died"  # the student's process died or broke the protocol during the cell
    BLOCKED = "blocked"  # the submission did something forbidden during the cell
    TAMPERED = "tampered"  # the submission changed the checks before or during the cell
    NOT_RUN = "not-run"  # the grader gave up on the submission before this cell

    @property
    def runaway(self) -> bool:
        return self in (Status.TIMEOUT, Status.DIED)


@dataclass
class CellResult:
    index: int
    kind: str
    grade_id: str | None
    points: float
    status: Status
    error: str | None = None
    seconds: float = 0.0
    violations: list = field(default_factory=list)  # [(severity, message)]
    tampered: list = field(default_factory=list)
    maxrss_kb: int = 0
    suspicious: str | None = None  # a test rejected a returned object built to fool it
    student_seconds: float = 0.0  # time in the submission's own code (its cells, calls into it), timed where it runs
    line: int | None = None  # a failed test cell: the line of its top level (1-based, as run) that failed

    @property
    def ok(self) -> bool:
        return self.status == Status.PASSED

    @property
    def forbidden(self) -> list[str]:
        return [m for sev, m in self.violations if sev == "forbidden"]

    def to_dict(self) -> dict:
        return asdict(self)


_CTX = None
_START_LOCK = threading.Lock()
_CTX_LOCK = threading.Lock()


_EXTRA_PRELOAD: set[str] = set()


def preload(modules) -> None:
    """Have the fork server import ``modules`` too (a problem set's scipy, sklearn ...), so that
    no grading process pays for those imports; a module that is missing is skipped. Only
    before the server starts: it is started once per grader process."""
    with _CTX_LOCK:
        if _CTX is None:
            _EXTRA_PRELOAD.update(m for m in modules if m.split(".")[0] not in ("dlt_checks", "coursekit"))


def _context():
    global _CTX
    with _CTX_LOCK:  # one fork server, started once, whichever grading thread gets here first
        if _CTX is None:
            os.environ.setdefault("MPLBACKEND", "Agg")
            ctx = mp.get_context("forkserver")
            root = str(Path(__file__).resolve().parent.parent)
            if root not in sys.path:
                sys.path.insert(0, root)
            ctx.set_forkserver_preload(PRELOAD + sorted(_EXTRA_PRELOAD - set(PRELOAD)) + ["coursekit._forkserver"])  # last
            _start_forkserver_without_secrets()
            _CTX = ctx
    return _CTX


def _start_forkserver_without_secrets() -> None:
    """Start the fork server with a minimal environment: every grading process is forked from
    it, and /proc/self/environ shows what it was started with, whatever a child clears later.

    The server is started through a wrapper that execs Python with ``env -i`` and the minimal
    variables: this process's own environment is never touched (other threads may be reading
    it, e.g. to find `alembic` on PATH)."""
    import shlex
    from multiprocessing import forkserver, spawn

    from ._child import minimal_environment

    folder = tempfile.mkdtemp(prefix="dlt-forkserver-")
    env = minimal_environment({"MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
        p for p in sys.path if p and os.path.isdir(p)), "IPYTHONDIR": os.path.join(folder, "ipython")})
    wrapper = Path(folder) / "python"
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/env -i {assignments} {shlex.quote(sys.executable)} \"$@\"\n")
    wrapper.chmod(0o700)
    saved = spawn.get_executable()
    try:
        spawn.set_executable(str(wrapper))
        forkserver.ensure_running()
    finally:
        spawn.set_executable(saved)
        # the shell reads the wrapper after exec, at its own pace: remove it when this process ends
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


def allowed_read_paths() -> list[str]:
    # /proc and /dev are handled in the child: its own /proc entry only, harmless devices only
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/etc", "/sys", "/bin"}
    paths.update(site.getsitepackages())
    here = Path(__file__).resolve().parent
    paths.update({str(here / "_child.py"), str(here / "checks.py")})  # tracebacks may quote these
    return sorted(p for p in paths if p)


_COMPILED: dict = {}


def compiled(cell: notebook.Cell) -> bytes | None:
    """A read-only cell (setup or test: the course's code, the same for every submission) compiled
    once per grader, marshalled; the grading processes run it as sent instead of each passing it
    through IPython's transforms and the compiler again (~1 ms a cell, ~25 ms for a long one).
    A setup cell gets IPython's static transforms, as its shell would apply them; a cell of one
    line (IPython also applies its line prefilters) or one that does not compile: None."""
    if cell.kind not in (notebook.Kind.SETUP, notebook.Kind.TEST):
        return None
    key = (str(cell.kind), cell.index, cell.grade_id, cell.source)
    if key not in _COMPILED:
        code = None
        try:
            from ._trusted import cell_filename

            name = cell_filename(str(cell.kind), cell.index, cell.grade_id)
            if cell.kind == notebook.Kind.TEST:
                code = compile(cell.source, name, "exec")
            else:
                from IPython.core.inputtransformer2 import TransformerManager

                source = TransformerManager().transform_cell(cell.source)
                if len(source.splitlines()) != 1:
                    code = compile(source, name, "exec")
        except (SyntaxError, ValueError):
            pass
        _COMPILED[key] = None if code is None else marshal.dumps(code)
    return _COMPILED[key]


class _Pair:
    """One submission's two processes: the untrusted child (student code) and the trusted side
    (tests, verdicts), joined by a socket pair; this process talks only to the trusted side."""

    def __init__(self, workdir: str, private_dir: str, limits: Limits):
        from . import _child, _trusted

        ctx = _context()
        t_end, u_end = ctx.Pipe(duplex=True)
        req = {
            "workdir": workdir,
            "allowed_read": allowed_read_paths(),
            "memory_limit_bytes": limits.memory_bytes,
            "output_limit_bytes": limits.output_limit_bytes,
            "threads": limits.threads,
        }
        self.procs = []
        with _START_LOCK:  # children start from the preloaded fork server; keep them from re-importing __main__
            main = sys.modules["__main__"]
            saved = {k: main.__dict__.pop(k) for k in ("__file__",) if k in main.__dict__}
            saved_spec, main.__spec__ = getattr(main, "__spec__", None), None
            try:
                self.child = ctx.Process(target=_child.serve, args=(u_end, req), daemon=True)
                self.child.start()
                self.procs.append(self.child)
                self.conn, t_conn = ctx.Pipe()
                treq = {"workdir": workdir, "private_dir": private_dir, "grace": limits.grace,
                        "cell_timeout": limits.cell_timeout, "startup_timeout": limits.startup_timeout,
                        "threads": limits.threads}
                self.trusted = ctx.Process(target=_trusted.serve, args=(t_conn, t_end, self.child.pid, treq),
                                           daemon=True)
                self.trusted.start()
                self.procs.append(self.trusted)
            finally:
                main.__dict__.update(saved)
                main.__spec__ = saved_spec
        for c in (t_end, u_end, t_conn):
            c.close()
        self.sent = None  # the index of the cell sent ahead
        hello = self._recv(limits.startup_timeout + 10)
        if not isinstance(hello, dict) or not hello.get("ready"):
            self.kill()
            raise RuntimeError("grading processes failed to start")

    def _recv(self, timeout: float):
        try:
            if not self.conn.poll(timeout):
                return None
            return self.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return _LOST

    AHEAD_BYTES = 16384  # a cell sent before the one ahead of it has ended: never enough to fill the socket

    def _send_cell(self, cell: notebook.Cell, limits: Limits) -> None:
        self.conn.send({"index": cell.index, "kind": str(cell.kind), "source": cell.source,  # plain str: no imports
                        "grade_id": cell.grade_id, "timeout": limits.cell_timeout, "code": compiled(cell)})

    def run(self, cell: notebook.Cell, limits: Limits, then: notebook.Cell | None = None):
        """Run ``cell``: its result, or None (no answer in time), or _LOST. ``then``: the next
        cell, sent now, so that the trusted side starts it as soon as this one ends."""
        try:
            if self.sent != cell.index:
                self._send_cell(cell, limits)
            self.sent = None
            if then is not None and len(then.source) + len(compiled(then) or b"") <= self.AHEAD_BYTES:
                self._send_cell(then, limits)
                self.sent = then.index
        except (OSError, ValueError):
            return _LOST
        # the trusted side owns the child's deadlines; this is the backstop for the trusted side itself
        backstop = time.monotonic() + 2 * limits.cell_timeout + 2 * limits.grace + 30
        try:
            while True:
                msg = self._recv(max(0.0, backstop - time.monotonic()))
                if not (isinstance(msg, dict) and "reference" in msg):
                    return msg
                if not self._serve_reference(msg):
                    return _LOST
        finally:
            BOARD.release(self)

    def _serve_reference(self, msg: dict) -> bool:
        """A test's `reference()` asks for a value ("get": the value, or None to compute it) or
        hands one in ("put"); False if the request is malformed."""
        key = msg.get("key")
        if type(key) is not str:
            return False
        if msg["reference"] == "get":
            try:
                self.conn.send({"blob": BOARD.get(key, self)})
            except (OSError, ValueError):
                return False
            return True
        if msg["reference"] == "put" and type(msg.get("blob")) is bytes:
            BOARD.put(key, msg["blob"], self, bool(msg.get("setup")))
            return True
        if msg["reference"] == "abandon":
            BOARD.abandon(key, self)
            return True
        return False

    def kill(self):
        for p in self.procs:
            for target in (lambda: os.killpg(p.pid, signal.SIGKILL), lambda: os.kill(p.pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError, TypeError, OSError):
                    pass
        for p in self.procs:
            p.join(timeout=5)
        try:
            self.conn.close()
        except OSError:
            pass

    def stop(self):
        try:
            self.conn.send(None)
            self.trusted.join(timeout=5)
        except (OSError, ValueError):
            pass
        self.kill()


_LOST = object()  # the trusted process is gone
_REPLY_KEYS = {"index", "ok", "error", "status", "seconds", "violations", "tampered", "maxrss_kb", "alive",
               "suspicious", "student_seconds"}
# Reference values the tests computed (`checks.reference`), shared by every submission this
# process grades (through BOARD, on request): key (a hash of the computation's code and inputs)
# -> pickled value. The trusted side hands those of a read-only cell (public course code on
# public data) to the student's process with that cell, so that neither side repeats e.g.
# training the course's victim model; SETUP_REFERENCES names them.
REFERENCES: dict[str, bytes] = {}
SETUP_REFERENCES: set[str] = set()
REFERENCES_MAX_BYTES = 512 * 2**20


def forget_references() -> None:
    """Drop the reference values kept so far (the bench starts some batches without them)."""
    REFERENCES.clear()
    SETUP_REFERENCES.clear()
    BOARD.unshared.clear()


def references_version() -> str:
    """What a stored reference value depends on besides its key (the hash of the computation's
    code and inputs): the libraries that computed it and the way keys are made."""
    import hashlib
    import importlib.metadata as md

    h = hashlib.sha256(sys.version.encode())
    for dist in ("torch", "numpy", "scipy", "scikit-learn", "POT", "cvxpy", "torchdiffeq"):
        try:
            h.update(f"{dist}={md.version(dist)};".encode())
        except md.PackageNotFoundError:
            h.update(f"{dist}=;".encode())
    for name in ("_trusted.py", "wire.py", "checks.py"):  # how values are keyed, pickled and asked for
        h.update((Path(__file__).with_name(name)).read_bytes())
    return h.hexdigest()[:16]


def _keep_reference(key: str, blob: bytes) -> bool:
    """Add a value (computed now, or read from a store) unless known, or over the bound; True if
    added. Under ``BOARD.cond``."""
    if key in REFERENCES or sum(map(len, REFERENCES.values())) + len(blob) > REFERENCES_MAX_BYTES:
        return False
    REFERENCES[key] = blob
    return True


def load_references(path: Path) -> set[str]:
    """Add the reference values stored in ``path`` (by `save_references`: an instructor's file,
    never a student's) to those this process shares; returns their keys. A file written with
    other libraries or another grader, or unreadable, is ignored (its values are recomputed)."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("version") != references_version() \
            or not isinstance(data.get("values"), dict) or not isinstance(data.get("setup"), list):
        return set()
    with BOARD.cond:
        for key, blob in data["values"].items():
            if type(key) is str and type(blob) is bytes:
                _keep_reference(key, blob)
        SETUP_REFERENCES.update(k for k in data["setup"] if k in REFERENCES)
        return {k for k in data["values"] if k in REFERENCES}


def save_references(path: Path, keys=None) -> int:
    """Store the shared reference values (all, or only ``keys``) in ``path``, atomically;
    returns their number. Values that depended on a submission are never among them."""
    with BOARD.cond:
        values = {k: v for k, v in REFERENCES.items() if keys is None or k in keys}
        setup = sorted(k for k in SETUP_REFERENCES if k in values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"version": references_version(), "values": values, "setup": setup}, f, protocol=5)
    os.replace(tmp, path)
    return len(values)


class _Board:
    """Where the grading pairs of this process find reference values: each is computed once.
    A pair that asks for a value another pair is computing waits for it (unless it is itself
    computing one: then it computes, so that two pairs never wait on each other); a claim ends
    with the value, or with the claiming pair's cell."""

    def __init__(self):
        self.cond = threading.Condition()
        self.claims: dict[str, object] = {}  # key -> the pair computing it
        self.unshared: set[str] = set()  # computations that called into a submission: never shared
        self.trackers: list[set[str]] = []  # `tracking()`: the keys a batch used

    @contextlib.contextmanager
    def tracking(self):
        """The keys of the shared values asked for or computed while inside (a set, filled in)."""
        used: set[str] = set()
        with self.cond:
            self.trackers.append(used)
        try:
            yield used
        finally:
            with self.cond:
                self.trackers.remove(used)

    def _used(self, key: str) -> None:
        for used in self.trackers:
            used.add(key)

    def get(self, key: str, pair) -> bytes | None:
        with self.cond:
            while True:
                if key in REFERENCES:
                    self._used(key)
                    return REFERENCES[key]
                if key in self.unshared:
                    return None
                holder = self.claims.get(key)
                if holder is None or holder is pair or pair in self.claims.values():
                    self.claims.setdefault(key, pair)
                    return None
                self.cond.wait()

    def put(self, key: str, blob: bytes, pair, setup: bool) -> None:
        with self.cond:
            if _keep_reference(key, blob) and setup:
                SETUP_REFERENCES.add(key)
            if key in REFERENCES:
                self._used(key)
            if self.claims.get(key) is pair:
                del self.claims[key]
            self.cond.notify_all()

    def abandon(self, key: str, pair) -> None:
        """The value of ``key`` depended on the submission: nobody waits for it again."""
        with self.cond:
            self.unshared.add(key)
            if self.claims.get(key) is pair:
                del self.claims[key]
            self.cond.notify_all()

    def release(self, pair) -> None:
        with self.cond:
            for key in [k for k, v in self.claims.items() if v is pair]:
                del self.claims[key]
            self.cond.notify_all()


BOARD = _Board()


def _valid_reply(reply, index: int) -> bool:
    return isinstance(reply, dict) and reply.get("index") == index and _REPLY_KEYS <= set(reply)


def _result(cell: notebook.Cell, reply: dict) -> CellResult:
    r = CellResult(cell.index, cell.kind, cell.grade_id, cell.points, Status(reply["status"]), reply["error"],
                   float(reply["seconds"]), list(reply["violations"]), list(reply["tampered"]),
                   int(reply["maxrss_kb"]), reply["suspicious"], float(reply["student_seconds"]))
    line = reply.get("line")
    r.line = line if type(line) is int and line > 0 else None
    if r.tampered:
        r.status = Status.TAMPERED
    elif r.forbidden:
        r.status = Status.BLOCKED
    return r


@functools.cache
def _helper_bytecode() -> bytes:
    """The comparison helper compiled once, as a .pyc that is used without checking its source."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "helper.pyc"
        py_compile.compile(str(CHECKS_SOURCE), cfile=str(out), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return out.read_bytes()


def _folders(files: dict[str, bytes] | None) -> tuple[str, str]:
    """A submission's working folder (``files`` and the comparison helper) and the trusted side's."""
    workdir = tempfile.mkdtemp(prefix="dlt-grade-")
    private = tempfile.mkdtemp(prefix="dlt-trusted-")  # 0700: the trusted side's own output
    os.chmod(workdir, 0o755)
    for name, data in (files or {}).items():
        (Path(workdir) / name).write_bytes(data)
    shutil.copyfile(CHECKS_SOURCE, Path(workdir) / HELPER_NAME)
    cached = Path(workdir) / importlib.util.cache_from_source(HELPER_NAME)
    cached.parent.mkdir()
    cached.write_bytes(_helper_bytecode())  # the child imports it without compiling it (~13 ms)
    return workdir, private


def _discard(pair, workdir: str, private: str, stop: bool = False) -> None:
    """End a pair (``stop``: let it finish cleanly; else kill it) and remove its folders."""
    try:
        if pair is not None and stop:
            pair.stop()
        elif pair is not None:
            pair.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def _discard_started(fut) -> None:
    if not fut.cancelled() and fut.exception() is None:
        _discard(*fut.result())


class _Ahead:
    """Grading pairs started before a submission needs them, and stopped after it no longer
    does, on threads of their own (`ahead`): in a batch, a submission's processes start while
    the one before it is graded. A spare pair has run nothing: its working folder holds only
    the comparison helper, as a pair started on demand. Saves the time a start and a stop take
    on a busy machine (about 0.1 s per submission on 2 cores), not their CPU."""

    def __init__(self):
        self.lock = threading.Lock()
        self.depth = 0  # spares kept starting or ready; 0: off
        self.spares: list = []  # (limits, future of (pair, workdir, private))
        self.pool = None

    @staticmethod
    def _start(limits: Limits):
        workdir, private = _folders(None)
        try:
            return _Pair(workdir, private, limits), workdir, private
        except BaseException:
            _discard(None, workdir, private)
            raise

    def take(self, limits: Limits):
        """A started pair for ``limits`` with its folders, or None; starts the next spare."""
        with self.lock:
            if not self.depth:
                return None
            found = next((fut for lim, fut in self.spares if lim == limits), None)
            self.spares = [(lim, fut) for lim, fut in self.spares if fut is not found]
            if len(self.spares) < self.depth:
                self.spares.append((limits, self.pool.submit(self._start, limits)))
        if found is None:
            return None
        try:
            pair, workdir, private = found.result()
        except Exception:  # noqa: BLE001 -- the caller starts its own
            return None
        if all(p.is_alive() for p in pair.procs):
            return pair, workdir, private
        _discard(pair, workdir, private)
        return None

    def stop(self, pair, workdir: str, private: str) -> bool:
        """Stop a pair and remove its folders in the background; False when off (do it yourself)."""
        with self.lock:
            if not self.depth:
                return False
            self.pool.submit(_discard, pair, workdir, private, True)
            return True

    @contextlib.contextmanager
    def on(self, depth: int):
        import concurrent.futures as cf

        with self.lock:
            outer = bool(self.depth)  # a batch within a batch: the outer one's spares serve
            if not outer:
                self.depth, self.pool = max(1, depth), cf.ThreadPoolExecutor(max(1, depth), "dlt-ahead")
        if outer:
            yield
            return
        try:
            yield
        finally:
            with self.lock:
                spares, self.spares, self.depth = self.spares, [], 0
            for _, fut in spares:
                fut.add_done_callback(_discard_started)
            self.pool.shutdown(wait=True)  # every background start and stop has ended
            self.pool = None


AHEAD = _Ahead()


def ahead(workers: int):
    """While inside, grading pairs are started ahead (one per worker) and stopped in the
    background (`run_cells` of a batch); on leaving, spares are killed and their folders removed."""
    return AHEAD.on(workers)


def run_cells(plan: list[notebook.Cell], files: dict[str, bytes] | None = None, limits: Limits = Limits(),
              on_cell=None) -> list[CellResult]:
    """Execute ``plan`` (code cells in order) for one submission; one result per cell.

    Student cells run in a fresh untrusted child, test cells in a trusted process beside it
    (see `_trusted`). files: extra files (name -> bytes) placed in the child's working
    directory; the authored comparison helper is always placed there as ``dlt_checks.py``.
    """
    started = None if files else AHEAD.take(limits)
    if started is not None:
        pair, workdir, private = started
    else:
        workdir, private = _folders(files)
        pair = None
    try:
        results: list[CellResult] = []
        position, restarts = 0, 0
        if pair is None:
            pair = _Pair(workdir, private, limits)
        while position < len(plan):
            cell = plan[position]
            t0 = time.perf_counter()
            reply = pair.run(cell, limits, plan[position + 1] if position + 1 < len(plan) else None)
            if _valid_reply(reply, cell.index):
                results.append(_result(cell, reply))
                alive = reply["alive"]
            else:  # the trusted side itself failed (a test cell's own code ran away): the backstop
                error = ("TimeoutError: cell exceeded its time limit" if reply is None
                         else "the grader's test process failed on this cell")
                results.append(CellResult(cell.index, cell.kind, cell.grade_id, cell.points,
                                          Status.TIMEOUT if reply is None else Status.DIED, error,
                                          time.perf_counter() - t0))
                alive = False
            if on_cell:
                on_cell(results[-1])
            position += 1
            if alive:
                continue
            pair.kill()
            pair = None
            restarts += 1
            if restarts > limits.max_restarts or position >= len(plan):
                break
            pair = _Pair(workdir, private, limits)
            # rebuild the state: every earlier cell but those that ran away or failed a test
            for earlier, before in zip(plan[: position - 1], results):
                if before.status.runaway or (earlier.kind == "test" and not before.ok):
                    continue
                again = pair.run(earlier, limits)
                if not _valid_reply(again, earlier.index) or not again["alive"]:
                    pair.kill()
                    pair = None
                    break
            if pair is None:
                break
        if pair is not None:
            if AHEAD.stop(pair, workdir, private):
                workdir = None  # its folders go with the background stop
            else:
                pair.stop()
            pair = None
        for cell in plan[len(results):]:
            results.append(CellResult(cell.index, cell.kind, cell.grade_id, cell.points, Status.NOT_RUN,
                                      "not run: the grader stopped after repeated failures"))
        return results
    finally:
        if workdir is not None:
            _discard(pair, workdir, private)
