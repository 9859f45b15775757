"""The grading child: runs one submission's cells in a forked, limited, audited process.

It is forked from a server that has already imported numpy, torch, matplotlib and IPython,
so each submission pays no import cost. Protocol with the parent (JSON over a pipe):
parent -> {"index", "kind", "source", "timeout"} per cell, then {"cmd": "stop"};
child  -> {"ready"} once, then one result per cell.

Defences (see README "What the grader defends against"):
- resource limits (address space, file size, processes) and a soft per-cell timer;
  the parent adds the hard wall-clock kill;
- an audit hook (PEP 578, cannot be removed) that blocks reading course files, writing
  outside the work directory, importing `solutions`/`coursekit`, spawning processes,
  sockets, ctypes and gc introspection; during test cells it also blocks frame access;
- an identity snapshot of numpy, torch, builtins, math and the comparison helper, checked
  before and after every test cell; test cells run in their own namespace.
"""

from __future__ import annotations

import json
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
    snap = {}
    for name in PROTECTED_MODULES:
        mod = sys.modules.get(name)
        if mod is not None:
            snap[name] = (mod, dict(vars(mod)))
    for name, attrs in PROTECTED_NAMES.items():
        mod = sys.modules.get(name)
        if mod is not None:
            snap[name] = (mod, {a: getattr(mod, a) for a in attrs if hasattr(mod, a)})
    return snap


def _diff(snap: dict) -> list[str]:
    changed = []
    for name, (mod, attrs) in snap.items():
        if sys.modules.get(name) is not mod:
            changed.append(f"sys.modules[{name!r}] replaced")
            continue
        now = vars(mod)
        for key, value in attrs.items():
            if key.startswith("_"):  # private state libraries rebind themselves
                continue
            if now.get(key, _diff) is not value:
                changed.append(f"{name}.{key} was replaced")
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


def _tail(path: str, start: int, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            end = f.tell()
            n = min(end - start, limit)
            f.seek(end - n)
            text = f.read(n).decode("utf-8", "replace")
        return ("... [output truncated]\n" if end - start > limit else "") + text
    except OSError:
        return ""


def _format_error(exc: BaseException) -> str:
    try:
        msg = str(exc)
    except Exception:  # noqa: BLE001 -- a student's exception may fail to print
        msg = "<unprintable message>"
    msg = msg if len(msg) <= 2000 else msg[:2000] + " ... [truncated]"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def main(conn, req: dict) -> None:
    """Entry point in the forked child: set up, then run cells sent by the parent."""
    os.setsid()
    workdir = req["workdir"]
    out_path = os.path.join(workdir, ".output.log")
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    for key, value in {"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir, "MPLBACKEND": "Agg",
                       "PYTHONHASHSEED": "0"}.items():
        os.environ[key] = value
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(workdir, ".torchinductor")
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

    matplotlib.use("Agg")
    torch.set_num_threads(int(req.get("threads", 1)))
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["__name__"] = "__main__"
    import dlt_checks  # noqa: F401 -- the authored helper, copied in by the parent

    _wrap_torch_io(torch)
    dropped = _drop_privileges(workdir)
    _install_limits(req)
    guard = Guard(workdir, req["allowed_read"])
    snap = _snapshot()
    sys.addaudithook(_make_hook(guard))
    send = conn.send_bytes
    recv = conn.recv_bytes
    dumps, loads = json.dumps, json.loads
    setitimer, ITIMER_REAL = signal.setitimer, signal.ITIMER_REAL

    def on_alarm(signum, frame):
        raise TimeoutError("cell exceeded its time limit")

    signal.signal(signal.SIGALRM, on_alarm)
    test_vars: dict = {}
    setup_ns: dict = {}
    send(dumps({"ready": True, "pid": os.getpid(), "unprivileged": dropped}).encode())
    guard.phase = "code"
    while True:
        msg = loads(recv().decode())
        if msg.get("cmd") == "stop":
            break
        idx, kind, src = msg["index"], msg["kind"], msg["source"]
        start_out = os.lseek(1, 0, os.SEEK_END)
        n_viol = len(guard.violations)
        tampered_before = _diff(snap) if kind == "test" else []
        shadowed: list[str] = []
        error = None
        ns_before = dict(shell.user_ns) if kind == "setup" else None
        t0 = time.perf_counter()
        setitimer(ITIMER_REAL, float(msg["timeout"]))
        try:
            if kind == "test":
                guard.phase = "test"
                ns = dict(shell.user_ns)
                ns.update(test_vars)
                for name, value in setup_ns.items():  # names the setup cell defined
                    if ns.get(name) is not value:
                        ns[name] = value
                        if callable(value) or type(value) is type(sys):
                            shadowed.append(f"redefined `{name}` (provided by the setup cell)")
                exec(compile(src, f"<test {msg.get('grade_id')}>", "exec"), ns)
                for key, value in ns.items():
                    if key not in shell.user_ns or shell.user_ns[key] is not value:
                        test_vars[key] = value
            else:
                guard.phase = "solution" if kind == "solution" else "code"
                code = shell.transform_cell(src)  # IPython magics -> plain Python
                exec(compile(code, f"<cell {idx}>", "exec"), shell.user_ns)
        except BaseException as exc:  # noqa: BLE001 -- everything a cell raises is a failure
            error = _format_error(exc)
        finally:
            setitimer(ITIMER_REAL, 0)
            guard.phase = "code"
        if kind == "setup" and error is None:  # only the names this read-only cell itself bound
            setup_ns.update({k: v for k, v in shell.user_ns.items()
                             if not k.startswith("_") and (k not in ns_before or ns_before[k] is not v)})
        elapsed = time.perf_counter() - t0
        tampered = []
        if kind == "test":
            tampered = sorted(set(tampered_before + _diff(snap) + shadowed))
        new_viol = guard.violations[n_viol:]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        reply = {
            "index": idx,
            "ok": error is None,
            "error": error,
            "seconds": elapsed,
            "output": _tail(out_path, start_out, int(req["output_tail_bytes"])),
            "violations": new_viol,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "tampered": tampered,
        }
        send(dumps(reply).encode())
    conn.close()
    os._exit(0)

