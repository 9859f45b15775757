"""The untrusted side: the process where a submission's code runs, and nothing else.

It is forked from a server that has already imported numpy, torch, matplotlib and IPython.
It executes the student's cells (and the instructor's read-only cells, so the student's code
sees the same setup) and answers the trusted side (`_trusted`), which runs every test cell:
look up a name, call a function, read an attribute, iterate. Requests arrive pickled (trusted
data); replies are `wire`-encoded plain data, the only thing the trusted side reads. Nothing in
this process decides a grade: whatever the submission does to numpy, torch, json, the comparison
helper or this module changes only what its own functions return.

Defence in depth, and the source of flags in the report (see README):
- a minimal environment (no credentials), no capabilities (or the `nobody` user), no new
  privileges, death with the fork server, resource limits (address space, file size, processes)
  and a soft timer per request (the trusted side owns the hard deadline);
- an audit hook (PEP 578, cannot be removed) that blocks reading course files, writing outside
  the work directory, importing `solutions`/`coursekit`, spawning processes, sockets, ctypes
  and gc introspection, and frame access while a test calls in;
- an identity snapshot of numpy, torch, builtins, math and the comparison helper, reported
  after every test cell.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time

FORBIDDEN_MODULES = ("solutions", "coursekit", "nbgrader", "otter")
BLOCKED_EVENTS = {
    "subprocess.Popen": "starting a process",
    "os.system": "starting a process",
    "os.exec": "starting a process",
    "os.posix_spawn": "starting a process",
    "os.spawn": "starting a process",
    "os.fork": "forking",
    "os.forkpty": "forking",
    "pty.spawn": "starting a process",
    "os.killpg": "sending signals",
    "socket.connect": "network access",
    "socket.bind": "network access",
    "socket.getaddrinfo": "network access",
    "ctypes.dlopen": "ctypes",
    "ctypes.dlsym": "ctypes",
    "ctypes.cdata": "ctypes",
    "ctypes.addressof": "ctypes",
    "ctypes.string_at": "ctypes",
    "ctypes.call_function": "ctypes",
    "gc.get_objects": "gc introspection",
    "gc.get_referrers": "gc introspection",
    "gc.get_referents": "gc introspection",
    "sys.addaudithook": "audit hooks",
    "sys.settrace": "tracing",
    "sys.setprofile": "tracing",
    "sys.monitoring.register_callback": "tracing",
    "os.chroot": "chroot",
    "os.setuid": "changing user",
}
PATH_WRITE_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.truncate", "os.chmod", "os.chown",
                     "os.link", "os.symlink", "os.mkdir", "os.utime", "shutil.rmtree", "shutil.move")
SAFE_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/tty", "/dev/shm")
FRAME_ATTRS = {"tb_frame", "f_back", "gi_frame", "cr_frame", "ag_frame", "f_globals", "f_locals",
               "gi_code", "f_builtins"}
# Modules checked whole (no library rebinds their attributes at run time) ...
PROTECTED_MODULES = ("builtins", "math", "numpy.testing", "torch.testing", "dlt_checks", "json", "coursekit._child")
# ... and, in large libraries that rebind some of their own names lazily, the names checks rely on.
PROTECTED_NAMES = {
    "numpy": ("allclose", "isclose", "array_equal", "array_equiv", "asarray", "asanyarray", "array", "abs",
              "absolute", "max", "amax", "min", "all", "any", "isfinite", "isnan", "isinf", "where", "argmax",
              "unravel_index", "argwhere", "sum", "mean", "linalg", "testing", "float64", "ndarray", "errstate"),
    "numpy.linalg": ("norm", "eigh", "svd", "matrix_rank", "solve", "inv"),
    "torch": ("allclose", "isclose", "equal", "as_tensor", "tensor", "from_numpy", "abs", "max", "all", "any",
              "isfinite", "isnan", "testing", "Tensor", "float64", "float32", "linalg", "autograd", "func"),
    "torch.linalg": ("norm", "eigh", "svd", "matrix_rank", "solve", "inv", "vector_norm", "matrix_norm"),
}


class SandboxViolation(PermissionError):
    """Raised inside student code when it does something the grader forbids."""


def _install_limits(req: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = int(req["output_limit_bytes"]) * 4
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with open("/proc/self/status") as f:
        vm = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")), 0)
    mem = vm + int(req["memory_limit_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    nproc = int(req.get("nproc_limit", 512))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _world_traversable(path: str) -> bool:
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _drop_privileges(workdir: str) -> bool:
    """As root, run as `nobody` (file permissions then protect the course) when the Python
    installation is readable by it; returns whether privileges were dropped."""
    if os.geteuid() != 0 or not all(_world_traversable(p) for p in (sys.base_prefix, sys.prefix)):
        return False
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return False
    os.chown(workdir, pw.pw_uid, pw.pw_gid)
    for name in os.listdir(workdir):
        os.chown(os.path.join(workdir, name), pw.pw_uid, pw.pw_gid)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    return True


def _wrap_torch_io(torch) -> None:
    """torch.save/torch.load open paths in C++, out of the audit hook's sight: route paths through `open`."""
    save, load = torch.save, torch.load

    def guarded_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, bytes, os.PathLike)):
            with open(f, "wb") as fh:
                return save(obj, fh, *args, **kwargs)
        return save(obj, f, *args, **kwargs)

    def guarded_load(f, *args, **kwargs):
        if isinstance(f, (str, bytes, os.PathLike)):
            with open(f, "rb") as fh:
                return load(fh, *args, **kwargs)
        return load(f, *args, **kwargs)

    guarded_save.__doc__, guarded_load.__doc__ = save.__doc__, load.__doc__
    torch.save, torch.load = guarded_save, guarded_load


def _snapshot() -> dict:
    """module name -> (module, its public attributes (name, value)): private state libraries rebind themselves."""
    snap = {}
    for name in PROTECTED_MODULES:
        mod = sys.modules.get(name)
        if mod is not None:
            snap[name] = (mod, [(k, v) for k, v in vars(mod).items() if not k.startswith("_")])
    for name, attrs in PROTECTED_NAMES.items():
        mod = sys.modules.get(name)
        if mod is not None:
            snap[name] = (mod, [(a, getattr(mod, a)) for a in attrs if not a.startswith("_") and hasattr(mod, a)])
    return snap


def _diff(snap: dict) -> list[str]:
    changed = []
    for name, (mod, attrs) in snap.items():
        if sys.modules.get(name) is not mod:
            changed.append(f"sys.modules[{name!r}] replaced")
            continue
        get = vars(mod).get
        changed += [f"{name}.{key} was replaced" for key, value in attrs if get(key, _diff) is not value]
    return changed


class Guard:
    """State shared with the audit hook; the hook's closure holds the only reference."""

    def __init__(self, workdir: str, allowed_read: list[str]):
        self.workdir = os.path.realpath(workdir)
        self.allowed_read = [os.path.realpath(p) for p in allowed_read]
        self.phase = "setup"  # setup | solution | code | test
        self.violations: list[tuple[str, str]] = []  # (severity, message)
        self.in_hook = False
        self.library_prefixes = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix)} |
                                      {sys.prefix + os.sep, sys.base_prefix + os.sep, "<frozen "})

    def caller_is_student(self) -> bool:
        """Whether the code that raised the current audit event is a submission's (not a library's)."""
        self.in_hook = True
        try:
            frame = sys._getframe(3)  # caller_is_student <- hook <- (C) <- the triggering code
            for _ in range(2):  # look through `inspect.currentframe()` and friends
                if frame is None:
                    return False
                name = frame.f_code.co_filename
                if not name.endswith(("inspect.py", "traceback.py")):
                    break
                frame = frame.f_back
            return frame is not None and not any(
                frame.f_code.co_filename.startswith(p) for p in self.library_prefixes)
        finally:
            self.in_hook = False

    def path_allowed(self, path, writing: bool) -> bool:
        if isinstance(path, int):
            return True
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return True
        if p == self.workdir or p.startswith(self.workdir + os.sep) or p in SAFE_DEVICES:
            return True
        if p.startswith("/proc/"):  # this process's own entries and system-wide facts, not other processes
            part = p.split("/")[2]
            return not writing and (part in (str(os.getpid()), "self", "thread-self") or not part.isdigit())
        if writing:
            return False
        if ".egg-info" + os.sep in p or ".dist-info" + os.sep in p:
            return True  # package metadata (importlib.metadata scans every sys.path entry)
        return any(p == a or p.startswith(a.rstrip(os.sep) + os.sep) for a in self.allowed_read)


def _write_severity(path: str) -> str:
    """Creating a new file in scratch space is only refused; touching an existing file outside the
    work directory, or writing anywhere else, is an attempt on course or other students' files."""
    real = os.path.realpath(path)
    scratch = real.startswith(("/tmp/", "/var/tmp/", "/dev/shm/")) and not real.startswith("/tmp/dlt-grade-")
    return "blocked" if scratch and not os.path.lexists(real) else "forbidden"


def _make_hook(guard: Guard):
    def deny(severity: str, message: str):
        guard.violations.append((severity, message))
        raise SandboxViolation(f"blocked by the grader: {message}")

    def hook(event: str, args: tuple):
        if guard.phase == "setup":
            return
        if event == "open":
            path, mode = args[0], args[1]
            flags = args[2] if len(args) > 2 else 0
            writing = bool(mode and any(ch in str(mode) for ch in "wax+")) or bool(
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if not guard.path_allowed(path, writing):
                shown = os.fsdecode(path) if not isinstance(path, int) else str(path)
                deny(_write_severity(shown) if writing else "forbidden", f"{'writing' if writing else 'reading'} {shown}")
        elif event == "sqlite3.connect":
            if args and not guard.path_allowed(args[0], True) and str(args[0]) != ":memory:":
                deny("forbidden", f"opening database {args[0]}")
        elif event == "import":
            top = str(args[0]).split(".")[0]
            if top in FORBIDDEN_MODULES:
                deny("forbidden", f"importing {args[0]}")
        elif event in PATH_WRITE_EVENTS:
            for p in args[:2]:
                if isinstance(p, (str, bytes, os.PathLike)) and not guard.path_allowed(p, True):
                    deny(_write_severity(os.fsdecode(p)), f"{event} on {os.fsdecode(p)}")
        elif event == "os.kill":
            pid = args[0]
            if pid not in (os.getpid(), 0) and pid > 0 or pid <= 0:
                deny("blocked", "sending signals to other processes")
        elif event == "object.__setattr__":
            obj, name = args[0], args[1]
            mod = getattr(obj, "__module__", "") or ""
            if (name == "__code__" or (isinstance(obj, type) and mod != "__main__")) and guard.caller_is_student():
                deny("forbidden", f"patching {getattr(obj, '__qualname__', obj)!s}.{name}")
        elif event == "object.__delattr__":
            obj = args[0]
            if isinstance(obj, type) and (getattr(obj, "__module__", "") or "") != "__main__" \
                    and guard.caller_is_student():
                deny("forbidden", f"deleting {getattr(obj, '__qualname__', obj)!s}.{args[1]}")
        elif event in BLOCKED_EVENTS:
            severity = "forbidden" if event.startswith(("gc.", "sys.", "ctypes.")) else "blocked"
            deny(severity, BLOCKED_EVENTS[event])
        elif guard.phase == "test" and not guard.in_hook:
            frame_event = event in ("sys._getframe", "sys._current_frames") or (
                event == "object.__getattr__" and len(args) > 1 and args[1] in FRAME_ATTRS)
            if frame_event and guard.caller_is_student():
                deny("forbidden", "inspecting the test's frames")

    return hook


# --------------------------------------------------------------------------- process hardening

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 4, 38, 24
SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "MPLBACKEND")


def minimal_environment(extra: dict | None = None) -> dict:
    """What a grading process may see of the environment: no credentials, no TA settings."""
    env = {k: v for k, v in os.environ.items() if k in SAFE_ENV_KEYS}
    env.update(extra or {})
    return env


def redirect_output(path: str, mode: int) -> None:
    """Send this process's stdout and stderr (Python's and the C library's) to ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)


def _prctl(option: int, arg: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, arg, 0, 0, 0)


def die_with_parent() -> None:
    """SIGKILL this process when the process that forked it (the fork server) exits."""
    import ctypes  # noqa: F401 -- before the audit hook

    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)
    # the fork server hands every child a copy of the grader's "alive" pipe; holding it would keep the
    # fork server (and so this process) alive after the grader dies
    from multiprocessing import forkserver, resource_tracker

    for owner, attr in ((forkserver._forkserver, "_forkserver_alive_fd"), (resource_tracker._resource_tracker, "_fd")):
        fd = getattr(owner, attr, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(owner, attr, None)


def _drop_capabilities() -> bool:
    """As root without a usable `nobody`: give up every capability (no raising limits, no
    ptrace, no bypassing file permissions), for good."""
    if os.geteuid() != 0:
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    return libc.capset(ctypes.byref(header), ctypes.byref(data)) == 0


# --------------------------------------------------------------------------- serving the trusted side

_HANDLES: dict[int, object] = {}


def _handle_ref(hid: int):
    """Unpickled in this process: a handle the trusted side holds stands for the object itself."""
    return _HANDLES[hid]


def _make_handle(obj):
    from .wire import Handle

    hid = len(_HANDLES) + 1
    _HANDLES[hid] = obj
    t = type(obj)
    overrides = ""
    if t.__module__ == "__main__" or t.__module__.startswith("<"):
        overrides = ", ".join(m for m in ("__eq__", "__bool__", "__array__", "__float__", "__array_ufunc__",
                                          "__torch_function__") if any(m in vars(k) for k in t.__mro__[:-1]))
    return Handle(hid, f"{t.__module__}.{t.__qualname__}", callable(obj), overrides)


def _tensor_from_array(array, requires_grad: bool, parameter: bool):
    """Unpickled in this process: a tensor the trusted side sent as a numpy array (its own copy)."""
    import torch

    t = torch.from_numpy(array)
    if parameter:
        return torch.nn.Parameter(t, requires_grad=requires_grad)
    return t.requires_grad_(True) if requires_grad else t


def _format_error(exc: BaseException) -> tuple[str, str]:
    try:
        msg = str(exc)
    except Exception:  # noqa: BLE001 -- a student's exception may fail to print
        msg = "<unprintable message>"
    msg = msg if len(msg) <= 2000 else msg[:2000] + " ... [truncated]"
    try:
        name = str(type(exc).__name__)[:100]
    except Exception:  # noqa: BLE001
        name = "Exception"
    return name, msg


def _snapshot_args(values: list):
    """Copies of the tensors, arrays, modules and generators among ``values``, to tell later what changed."""
    import numpy as np
    import torch

    snaps = []
    for v in values:
        if type(v) in (torch.Tensor, torch.nn.Parameter):
            snaps.append(("tensor", v.detach().clone()))
        elif type(v) is np.ndarray:
            snaps.append(("array", v.copy()))
        elif isinstance(v, torch.nn.Module):
            snaps.append(("module", {k: (t, t.detach().clone()) for k, t in v.state_dict(keep_vars=True).items()}))
        elif type(v) is torch.Generator:
            snaps.append(("generator", v.get_state()))
        else:
            snaps.append(None)
    return snaps


def _changes(values: list, snaps: list) -> list:
    """[(position, kind, new content, replaced parameter names)] for the arguments a call changed."""
    import numpy as np
    import torch

    out = []
    for pos, (v, snap) in enumerate(zip(values, snaps)):
        if snap is None:
            continue
        kind, before = snap
        if kind == "tensor":
            now = v.detach()
            if now.shape != before.shape or not torch.equal(now, before):
                out.append((pos, kind, now.clone(), []))
        elif kind == "array":
            if v.shape != before.shape or not np.array_equal(v, before, equal_nan=True):
                out.append((pos, kind, v.copy(), []))
        elif kind == "generator":
            now = v.get_state()
            if not torch.equal(now, before):
                out.append((pos, kind, now, []))
        else:
            state = v.state_dict(keep_vars=True)
            changed, replaced = {}, []
            for k, t in state.items():
                obj, copy_ = before.get(k, (None, None))
                if obj is not t:
                    replaced.append(k)
                if copy_ is None or t.shape != copy_.shape or not torch.equal(t.detach(), copy_):
                    changed[k] = t.detach().clone()
                elif obj is not t:
                    changed[k] = t.detach().clone()
            if changed or replaced:
                out.append((pos, kind, changed, replaced))
    return out


def thread_controller():
    """threadpoolctl's view of the BLAS and OpenMP pools loaded so far (it scans the loaded
    libraries: ~10 ms), or None without threadpoolctl (e.g. a minimal Gradescope image)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def thread_environment(n: int) -> dict:
    """Variables that size the pools of a BLAS or OpenMP library first loaded after the fork."""
    return {name: str(n) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def limit_threads(n: int) -> None:
    """``n`` threads for torch and for the BLAS and OpenMP pools of numpy and scipy (OpenBLAS
    starts one per core: two grading processes would fight over the cores). Nothing to do in a
    process forked with ``n`` already (`_forkserver`): setting them again would start OpenBLAS's
    threads anew, each spinning ~0.1 s of CPU waiting for work."""
    import torch

    forkserver = sys.modules.get("coursekit._forkserver")
    if getattr(forkserver, "THREADS", None) == n:
        return
    torch.set_num_threads(n)
    controller = getattr(forkserver, "CONTROLLER", None) or thread_controller()
    if controller is not None:
        controller.limit(limits=n)


def make_shell(user_ns=None):
    """An IPython shell without a history database (a file per process, never read), on which
    `%matplotlib inline` and `%gui` work as in Jupyter but keep the Agg backend (IPython's base
    shell raises NotImplementedError: a submission's cell starting with it would fail)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):
            pass

        def enable_matplotlib(self, gui=None):
            return gui, "agg"

    config = Config()
    config.HistoryManager.enabled = False
    shell = GradingShell(config=config, **({} if user_ns is None else {"user_ns": user_ns}))
    shell.user_ns["__name__"] = "__main__"
    return shell


def new_shell(kind: str):
    """The IPython shell this grading process (``kind``: "child" or "trusted") runs cells in: the
    one the fork server prepared (`_forkserver`), else a new one. It becomes IPython's instance
    (get_ipython) and its namespace becomes ``__main__`` (pickling a class a cell defines)."""
    from IPython.core.interactiveshell import InteractiveShell

    prepared = getattr(sys.modules.get("coursekit._forkserver"), "SHELLS", {})
    shell = prepared.pop(kind, None)
    prepared.clear()  # the other process's shell: not this one's to use
    if shell is None:
        from ._trusted import SetupGlobals

        shell = make_shell(SetupGlobals() if kind == "trusted" else None)
    InteractiveShell._instance = shell
    sys.modules["__main__"] = shell.user_module
    return shell


def serve(conn, req: dict) -> None:  # noqa: C901 -- one branch per operation
    """Entry point in the forked child: set up, then answer the trusted side's requests on ``conn``.

    Requests are pickled by the trusted side (trusted data); every reply is ``wire.encode``d
    plain data, which is all the trusted side will read.
    """
    die_with_parent()
    os.setsid()
    fd = conn.fileno()
    workdir = req["workdir"]
    redirect_output(os.path.join(workdir, ".output.log"), 0o644)
    env = minimal_environment({"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir, "MPLBACKEND": "Agg",
                               "PYTHONHASHSEED": "0", "TORCHINDUCTOR_CACHE_DIR": os.path.join(workdir, ".ti"),
                               **thread_environment(int(req.get("threads", 1)))})
    os.environ.clear()
    os.environ.update(env)
    import pickle
    import tempfile

    tempfile.tempdir = workdir
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    import math  # noqa: F401

    import matplotlib
    import numpy
    import numpy.testing  # noqa: F401
    import torch
    import torch.func
    import torch.nn.functional
    import torch.testing

    from . import wire

    matplotlib.use("Agg")
    limit_threads(int(req.get("threads", 1)))
    shell = new_shell("child")
    import dlt_checks  # noqa: F401 -- the authored helper, copied in by the parent

    from ._trusted import cell_code

    setup_references: dict[str, bytes] = {}

    def setup_reference(fn, args, kwargs):
        """`reference()` in a read-only cell: the value the trusted side handed over with the
        cell (public course code on public data), else the call."""
        from ._trusted import _data_key

        try:
            blob = setup_references.get(_data_key((fn, args, sorted(kwargs.items())), set()))
        except Exception:  # noqa: BLE001 -- not keyable: compute
            blob = None
        return pickle.loads(blob) if blob is not None else fn(*args, **kwargs)

    _wrap_torch_io(torch)
    dropped = _drop_privileges(workdir)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _install_limits(req)
    no_caps = _drop_capabilities() if not dropped else False
    guard = Guard(workdir, req["allowed_read"])
    snap = _snapshot()
    sys.addaudithook(_make_hook(guard))
    read_frame, write_frame, encode = wire.read_frame, wire.write_frame, wire.encode
    setitimer, ITIMER_REAL, perf = signal.setitimer, signal.ITIMER_REAL, time.perf_counter

    def on_alarm(signum, frame):
        raise TimeoutError("cell exceeded its time limit")

    signal.signal(signal.SIGALRM, on_alarm)
    setup_ns: dict = {}
    forbidden_restore: list = []
    seen_violations = 0

    def status(test: bool) -> dict:
        """What the trusted side checks after a cell: new violations, tampering (after a test), memory."""
        nonlocal seen_violations
        tampered = []
        if test:
            tampered = _diff(snap)
            for name, value in setup_ns.items():  # names the setup cell defined, redefined since
                if shell.user_ns.get(name) is not value and (callable(value) or type(value) is type(sys)):
                    tampered.append(f"redefined `{name}` (provided by the setup cell)")
            guard.phase = "code"
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        found = {"violations": [list(v) for v in guard.violations[seen_violations:]],
                 "tampered": sorted(set(tampered)),
                 "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        seen_violations = len(guard.violations)
        return found
    write_frame(fd, encode({"ready": True, "pid": os.getpid(), "unprivileged": dropped, "no_caps": no_caps}))
    guard.phase = "code"
    while True:
        msg = pickle.loads(read_frame(fd))
        op = msg["op"]
        if op == "stop":
            break
        reply: dict = {"ok": True, "error": None}
        own = 0.0  # seconds in the submission's own code: the cell, or the call (not passing values)
        t0 = perf()
        setitimer(ITIMER_REAL, float(msg.get("timeout") or 0))
        try:
            if op == "exec":
                kind = msg["kind"]
                guard.phase = "solution" if kind == "solution" else "code"
                before = dict(shell.user_ns) if kind == "setup" else None
                if kind == "setup":
                    setup_references.update(msg.get("references") or {})
                dlt_checks._REFERENCE_HOOK = setup_reference if kind == "setup" and setup_references else None
                code = cell_code(shell, msg)  # a read-only cell as the grader compiled it
                start = perf()
                try:
                    exec(code, shell.user_ns)
                finally:
                    own = perf() - start
                if kind == "setup":  # only the names this read-only cell itself bound
                    setup_ns.update({k: v for k, v in shell.user_ns.items()
                                     if not k.startswith("_") and (k not in before or before[k] is not v)})
                reply["value"] = None
            elif op == "lookup":
                if msg.get("phase"):  # a test cell starts: its lookups and its calls
                    guard.phase = msg["phase"]
                found = {n: shell.user_ns[n] for n in msg["names"] if n in shell.user_ns}
                reply["value"] = found
            elif op in ("call", "run"):  # run: the test's function (first argument) called here
                target = _HANDLES[msg["id"]] if op == "call" else None
                if msg.get("wire"):  # plain data from the trusted side; handles are this process's objects
                    args, kwargs = wire.decode(msg["payload"], lambda h: _HANDLES[h.id])
                else:
                    args, kwargs = pickle.loads(msg["payload"])
                if op == "run":  # the test's function, sent first among the arguments
                    target, args = args[0], args[1:]
                keys = list(kwargs)
                values = list(args) + [kwargs[k] for k in keys]
                snaps = _snapshot_args(values)
                start = perf()
                try:
                    result = target(*args, **kwargs)
                finally:
                    own = perf() - start
                changes = _changes(values, snaps)
                reply["value"] = result
                reply["writeback"] = [(pos if pos < len(args) else keys[pos - len(args)], kind, new, replaced)
                                      for pos, kind, new, replaced in changes]
            elif op == "getattr":
                reply["value"] = getattr(_HANDLES[msg["id"]], msg["name"])
            elif op == "getitem":
                reply["value"] = _HANDLES[msg["id"]][pickle.loads(msg["payload"])]
            elif op == "list":
                reply["value"] = list(_HANDLES[msg["id"]])
            elif op == "len":
                reply["value"] = len(_HANDLES[msg["id"]])
            elif op == "repr":
                reply["value"] = repr(_HANDLES[msg["id"]])[:2000]
            elif op == "forbid":  # a rule of the exercise (checks.forbid), applied where the student's code runs
                from .checks import _forbid_patch

                if msg["on"]:
                    forbidden_restore.append(_forbid_patch(msg["names"], msg["message"]))
                elif forbidden_restore:
                    forbidden_restore.pop()()
                reply["value"] = None
            elif op == "phase":
                guard.phase = msg["phase"]
                reply["value"] = None
            elif op == "status":
                reply["value"] = status(bool(msg.get("test")))
            else:
                raise ValueError(f"unknown operation {op!r}")
        except BaseException as exc:  # noqa: BLE001 -- everything student code raises is reported
            setitimer(ITIMER_REAL, 0)
            reply = {"ok": False, "error": _format_error(exc), "value": None}
        finally:
            setitimer(ITIMER_REAL, 0)
            if op == "exec":
                guard.phase = "code"
        reply["seconds"] = perf() - t0
        if own > 0:
            reply["own"] = own
        if op == "exec":  # the status after the cell, without another exchange
            setitimer(ITIMER_REAL, 10.0)
            try:
                reply["status"] = status(False)
            except BaseException:  # noqa: BLE001 -- the trusted side asks for it then
                pass
            finally:
                setitimer(ITIMER_REAL, 0)
        try:
            body = encode(reply, _make_handle)
        except Exception as exc:  # noqa: BLE001 -- e.g. a value nested too deeply
            body = encode({"ok": False, "error": ("ValueError", f"the result cannot be returned: {exc}"[:500]),
                           "value": None, "seconds": perf() - t0})
        write_frame(fd, body)
    os._exit(0)
