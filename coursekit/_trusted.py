"""The trusted side: where every test cell runs and every verdict is made.

One trusted process per submission, forked from the preloaded fork server, beside one
untrusted process (`_child`) that holds the student's code. This process never executes
student code and never unpickles anything the student process sends: names a test cell
needs from the submission are fetched as plain data (`wire`), and student functions and
objects become :class:`Proxy` objects whose calls, attribute reads and iteration go over the
channel, each with a deadline this process owns. Comparisons, the helper (`dlt_checks`) and
the tests' own reference computations all run here, out of the student's reach.

Protocol with the grader (`sandbox`, trusted, multiprocessing Connection):
grader -> {"index", "kind", "source", "grade_id", "timeout", "grace"} per cell, then None;
here   -> {"ready"} once, then one result dict per cell.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import marshal
import os
import pickle
import re
import signal
import sys
import time
import traceback
import types

from . import wire

# exceptions a student function may raise that a test can catch by their own class
_BUILTIN_ERRORS = {name: getattr(builtins, name) for name in (
    "ValueError", "TypeError", "IndexError", "KeyError", "ZeroDivisionError", "AssertionError", "NotImplementedError",
    "RuntimeError", "ArithmeticError", "OverflowError", "FloatingPointError", "LookupError", "AttributeError",
    "TimeoutError", "MemoryError", "RecursionError", "NameError", "UnboundLocalError", "ImportError",
    "ModuleNotFoundError", "PermissionError", "OSError", "FileNotFoundError", "StopIteration")}


class StudentError(Exception):
    """An exception raised by the student's code whose class is not a built-in one."""


class ChildLost(RuntimeError):
    """The student's process died, stalled or broke the protocol; it has been killed."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Remote:
    """The channel to the untrusted process, with deadlines owned by this side."""

    def __init__(self, fd: int, pid: int, grace: float):
        self.fd, self.pid, self.grace = fd, pid, grace
        self.alive = True
        self.deadline = time.monotonic() + 3600.0  # the current cell's; set per cell
        self.lost: ChildLost | None = None
        wire.set_nonblocking(fd)

    def kill(self) -> None:
        self.alive = False
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def _lose(self, status: str, message: str) -> ChildLost:
        self.kill()
        self.lost = ChildLost(status, message)
        return self.lost

    def request(self, msg: dict, extra: float | None = None):
        """Send ``msg`` and return the decoded reply dict; the call has until the cell's deadline
        (plus ``grace`` for the student's own timer to fire). Any failure kills the child."""
        left = self.deadline - time.monotonic() if extra is None else extra
        msg["timeout"] = max(0.01, left)
        hard = time.monotonic() + max(0.01, left) + self.grace
        t0 = time.perf_counter()
        self.requests += 1
        reply = None
        try:
            self.send(msg, hard)
            reply = self.receive(hard)
            return reply
        finally:
            if msg["op"] in ("call", "run", "exec"):  # time in the submission's own code (for `make bench`):
                took = time.perf_counter() - t0  # as the child measured it: the cell or call, not passing values
                own = reply.get("own") if reply is not None else None
                self.student_seconds += min(took, own) if type(own) is float and own >= 0 else took

    def send(self, msg: dict, hard: float) -> None:
        if not self.alive:
            raise self.lost or ChildLost("died", "the student's process is gone")
        frame = _dumps(msg) if msg["op"] in ("call", "run") else pickle.dumps(msg, protocol=5)  # may fail: child untouched
        self._guarded(wire.write_frame, self.fd, frame, hard)

    def receive(self, hard: float) -> dict:
        reply = self._guarded(lambda: wire.decode(wire.read_frame(self.fd, hard), self._proxy))
        if not _valid_reply(reply):
            raise self._lose("died", "the cell corrupted the grader's channel")
        return reply

    def _guarded(self, io, *args):
        """Channel I/O: any failure is the child's, and kills it (the channel is out of step)."""
        timeout = f"TimeoutError: cell exceeded its time limit of {self.cell_timeout:g} s"
        try:
            return io(*args)
        except wire.ChannelTimeout:
            raise self._lose("timeout", timeout) from None
        except TimeoutError:  # this side's own cell timer (TimeoutError is an OSError)
            self._lose("timeout", timeout)
            raise
        except (wire.ChannelClosed, OSError):
            raise self._lose("died", "the grading process died while running this cell "
                                        "(os._exit, a killed kernel, or memory exhausted)") from None
        except wire.WireError:
            raise self._lose("died", "the cell corrupted the grader's channel") from None
        except BaseException:
            self._lose("timeout", timeout)
            raise

    cell_timeout = 60.0
    student_seconds = 0.0
    requests = 0

    def _proxy(self, handle: wire.Handle) -> Proxy:
        return Proxy(self, handle)

    def value(self, msg: dict):
        """The value a request returns, or the student's exception raised here as a trusted one."""
        reply = self.request(msg)
        if not reply["ok"]:
            raise_student_error(reply["error"])
        return reply.get("value")


def _valid_reply(reply) -> bool:
    if type(reply) is not dict or type(reply.get("ok")) is not bool:
        return False
    err = reply.get("error")
    if not reply["ok"]:
        return type(err) is tuple and len(err) == 2 and all(type(e) is str for e in err)
    return True


def _call(remote: Remote, msg: dict, args: tuple, kwargs: dict, fn=None):
    """A call in the student's process (``msg``: its target, or ``fn``, sent first among the
    arguments); what it changed in place is applied here."""
    reply = remote.request({**msg, "payload": (args if fn is None else (fn, *args), kwargs)})
    if not reply["ok"]:
        raise_student_error(reply["error"])
    _write_back(args, kwargs, reply.get("writeback") or [])
    return reply.get("value")


def raise_student_error(error: tuple[str, str]):
    name, msg = error
    cls = _BUILTIN_ERRORS.get(name)
    if cls is not None and name != "StopIteration":
        raise cls(msg)
    raise StudentError(f"{name}: {msg}" if msg else name)


class Proxy:
    """A student's object that stays in the student's process (a function, a model, ...)."""

    __slots__ = ("_remote", "_hid", "_type_name", "_callable", "_overrides")

    def __init__(self, remote: Remote, handle: wire.Handle):
        object.__setattr__(self, "_overrides", handle.overrides)
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_hid", handle.id)
        object.__setattr__(self, "_type_name", handle.type_name)
        object.__setattr__(self, "_callable", handle.is_callable)

    def __call__(self, *args, **kwargs):
        remote = object.__getattribute__(self, "_remote")
        if not object.__getattribute__(self, "_callable"):
            raise TypeError(f"'{object.__getattribute__(self, '_type_name')}' object is not callable")
        return _call(remote, {"op": "call", "id": object.__getattribute__(self, "_hid")}, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__") and name not in ("__name__", "__qualname__", "__doc__"):
            raise AttributeError(name)
        return object.__getattribute__(self, "_remote").value(
            {"op": "getattr", "id": object.__getattribute__(self, "_hid"), "name": name})

    def __setattr__(self, name, value):
        raise AttributeError("a test cannot set attributes of the student's objects")

    def __getitem__(self, key):
        return object.__getattribute__(self, "_remote").value(
            {"op": "getitem", "id": object.__getattribute__(self, "_hid"), "payload": pickle.dumps(key)})

    def __iter__(self):
        items = object.__getattribute__(self, "_remote").value(
            {"op": "list", "id": object.__getattribute__(self, "_hid")})
        return iter(items if type(items) is list else [])

    def __len__(self):
        n = object.__getattribute__(self, "_remote").value({"op": "len", "id": object.__getattribute__(self, "_hid")})
        if type(n) is not int:
            raise TypeError("len() of the student's object is not an integer")
        return n

    def __dlt_describe__(self) -> tuple[str, str]:
        """(type name, comparison methods its notebook-defined class overrides): for the helper's messages."""
        return object.__getattribute__(self, "_type_name"), object.__getattribute__(self, "_overrides")

    def __repr__(self):
        return f"<student object of type {object.__getattribute__(self, '_type_name')}>"

    def __reduce__(self):  # sent back to the student's process: the object itself there
        from . import _child

        return (_child._handle_ref, (object.__getattribute__(self, "_hid"),))


def _proxy_handle(obj) -> wire.Handle:
    if type(obj) is not Proxy:
        raise wire.WireError("not plain data")
    return wire.Handle(object.__getattribute__(obj, "_hid"), "", False)


def _dumps(msg: dict) -> bytes:
    """A call request. Plain arguments (and the student's own objects, by handle) go as `wire`
    data; anything else is pickled by value (functions and classes a test defines travel with
    their code), Proxy objects standing for the student's own objects."""
    try:
        return pickle.dumps({**msg, "payload": wire.encode(msg["payload"], _proxy_handle), "wire": True}, protocol=5)
    except wire.WireError:
        pass
    import io

    import cloudpickle

    _fast_submodule_search()
    buf = io.BytesIO()
    _pickler_class(cloudpickle.Pickler)(buf, protocol=5).dump(msg["payload"])
    return pickle.dumps({**msg, "payload": buf.getvalue()}, protocol=5)


_PICKLERS: dict = {}


def _value_blob(value) -> bytes:
    """A reference value, pickled for the grader's store and the processes that load it."""
    buf = io.BytesIO()
    _pickler_class(pickle.Pickler)(buf, protocol=5).dump(value)
    return buf.getvalue()


def _pickler_class(base):
    """cloudpickle's Pickler, with plain contiguous CPU tensors sent as numpy arrays: torch
    pickles each tensor through a nested ``torch.save`` and ``torch.load`` (about 0.1 ms each
    way, and a course model sent with every call holds several). Either way the student's
    process gets its own copy of each tensor, with the same values, shape, dtype and
    ``requires_grad``. Anything else (subclasses, non-contiguous views, attributes, hooks,
    dtypes numpy lacks) goes the way torch pickles it."""
    if base in _PICKLERS:
        return _PICKLERS[base]
    import torch

    from . import _child

    plain = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
             torch.uint8, torch.bool, torch.complex64, torch.complex128}

    class TensorPickler(base):
        def reducer_override(self, obj):
            t = type(obj)
            if (t is torch.Tensor or t is torch.nn.Parameter) and obj.device.type == "cpu" \
                    and obj.layout is torch.strided and obj.dtype in plain and obj.grad_fn is None \
                    and obj.is_contiguous() and not obj.__dict__ and not obj._backward_hooks \
                    and not obj.is_conj() and not obj.is_neg():
                return _child._tensor_from_array, (obj.detach().numpy(), obj.requires_grad, t is torch.nn.Parameter)
            other = getattr(super(), "reducer_override", None)  # cloudpickle's; plain pickle has none
            return NotImplemented if other is None else other(obj)

    _PICKLERS[base] = TensorPickler
    return TensorPickler


_SUBMODULES: dict = {}  # (package, next part) -> [(submodule, its name's parts)]; (code, package) -> found
_INDEXED: set = set()  # the names of sys.modules indexed so far
_ORDER: dict = {}  # name -> its place in sys.modules when indexed (cloudpickle's order)


def index_modules() -> None:
    """Index the names in ``sys.modules`` not indexed yet. The fork server indexes its own (about
    45 ms), so that a grading process only looks at the names added since: it walks back from
    the newest and scans everything again only if the count does not add up (a module removed)."""
    n = len(sys.modules)
    if n == len(_INDEXED) and next(reversed(sys.modules), None) in _INDEXED:
        return
    new = []
    for name in reversed(sys.modules):
        if name in _INDEXED:
            break
        new.append(name)
    if n != len(_INDEXED) + len(new):  # names removed: start again from all of sys.modules
        _INDEXED.clear()
        _ORDER.clear()
        for key in [k for k in _SUBMODULES if type(k[0]) is str]:
            del _SUBMODULES[key]
        new = list(reversed(sys.modules))
    for name in reversed(new):
        _INDEXED.add(name)
        if not isinstance(name, str):
            continue
        _ORDER[name] = len(_ORDER)
        parts = name.split(".")
        for i in range(1, len(parts)):
            _SUBMODULES.setdefault((".".join(parts[:i]), parts[i]), []).append((name, frozenset(parts[i:])))
    if any("." in name for name in new if isinstance(name, str)):  # cached answers may miss it
        for key in [k for k in _SUBMODULES if type(k[0]) is not str]:
            del _SUBMODULES[key]


def _imported_submodules(code, top_level_dependencies):
    """cloudpickle's ``_find_imported_submodules`` (the loaded submodules of a function's
    packages that its code names), with the same result, from an index of ``sys.modules`` by
    package and next part of the name: cloudpickle scans all of ``sys.modules`` for every package
    a function uses, about 2 ms per function once torch is loaded, and a test may send dozens."""
    index_modules()
    found = []
    for x in top_level_dependencies:
        if isinstance(x, types.ModuleType) and getattr(x, "__package__", None):
            key = (code, x.__name__)
            if key not in _SUBMODULES:
                names = set(code.co_names)
                _SUBMODULES[key] = sorted(
                    (name for part in names for name, tokens in _SUBMODULES.get((x.__name__, part), ()) if tokens <= names),
                    key=_ORDER.get)
            found.extend(sys.modules[name] for name in _SUBMODULES[key] if name in sys.modules)
    return found


def _fast_submodule_search() -> None:
    from cloudpickle import cloudpickle as impl

    if getattr(impl, "_find_imported_submodules", None) is not _imported_submodules:
        impl._find_imported_submodules = _imported_submodules


def _write_back(args: tuple, kwargs: dict, changes: list) -> None:
    """Apply to this side's arguments what the student's function did to its copies in place."""
    import numpy as np
    import torch

    if type(changes) is not list:
        return
    for change in changes:
        if type(change) is not tuple or len(change) != 4:
            continue
        where, kind, new, replaced = change
        if type(where) is int and 0 <= where < len(args):
            orig = args[where]
        elif type(where) is str and where in kwargs:
            orig = kwargs[where]
        else:
            continue
        with torch.no_grad():
            if kind == "tensor" and type(orig) in (torch.Tensor, torch.nn.Parameter) and type(new) is torch.Tensor:
                if orig.shape == new.shape and orig.dtype == new.dtype:
                    orig.copy_(new)
                else:
                    orig.data = new
            elif kind == "array" and type(orig) is np.ndarray and type(new) is np.ndarray:
                if orig.shape == new.shape and orig.flags.writeable:
                    orig[...] = new
            elif kind == "generator" and type(orig) is torch.Generator and type(new) is torch.Tensor:
                orig.set_state(new)
            elif kind == "module" and isinstance(orig, torch.nn.Module) and type(new) is dict:
                _write_back_module(orig, new, replaced if type(replaced) is list else [])


def _write_back_module(module, new: dict, replaced: list) -> None:
    import torch

    state = module.state_dict(keep_vars=True)
    for name, value in new.items():
        if type(name) is not str or name not in state or type(value) is not torch.Tensor:
            continue
        old = state[name]
        if name in replaced or old.shape != value.shape:
            owner_path, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            if isinstance(old, torch.nn.Parameter):
                setattr(owner, leaf, torch.nn.Parameter(value.clone(), requires_grad=old.requires_grad))
            else:
                owner.register_buffer(leaf, value.clone())
        else:
            old.copy_(value)


# --------------------------------------------------------------------------- the process

def _names(code) -> set[str]:
    """Every global name a code object (and the functions it defines) may load."""
    out = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            out |= _names(const)
    return out


def _format_error(exc: BaseException) -> str:
    if isinstance(exc, ChildLost):
        return str(exc)
    msg = str(exc)
    msg = msg if len(msg) <= 2000 else msg[:2000] + " ... [truncated]"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _Uncacheable(Exception):
    pass


_PLAIN_TYPES = frozenset({int, float, complex, bool, str, bytes, tuple, list, dict, set, frozenset, type(None)})


class _KeyPickler(pickle.Pickler):
    """Pickles a reference computation's inputs into a cache key: code by its bytecode and the
    globals it reads, modules by name; a submission's object makes the inputs uncacheable."""

    def __init__(self, file, seen: set):
        super().__init__(file, protocol=5)
        self.seen = seen

    def persistent_id(self, obj):
        if type(obj) in _PLAIN_TYPES:  # most of what a key holds: no isinstance checks (~7 us each on torch's types)
            return None
        if isinstance(obj, Proxy):
            raise _Uncacheable
        if isinstance(obj, types.ModuleType):
            return ("module", obj.__name__)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor) and type(obj) in (torch.Tensor, torch.nn.Parameter):
            t = obj.detach().cpu().contiguous()  # torch's own pickle carries a random serialization id
            return ("tensor", type(obj).__name__, str(t.dtype), tuple(t.shape), obj.requires_grad,
                    t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        if torch is not None and isinstance(obj, torch.Generator):
            return ("generator", obj.get_state().numpy().tobytes())
        if isinstance(obj, (types.FunctionType, types.MethodType, type)) or callable(obj) and not hasattr(obj, "__dict__"):
            return ("code", _code_key(obj, self.seen))
        return None


def _code_key(obj, seen: set) -> str:
    if isinstance(obj, types.MethodType):
        return _code_key(obj.__func__, seen) + _data_key(obj.__self__, seen)
    if isinstance(obj, type):
        if obj.__module__ not in ("__main__", "builtins") and not obj.__module__.startswith("<"):
            return f"class:{obj.__module__}.{obj.__qualname__}"
        if id(obj) in seen:
            return f"recursive-class:{obj.__qualname__}"
        seen.add(id(obj))
        return "class:" + obj.__qualname__ + "(" + ",".join(_code_key(b, seen) for b in obj.__bases__) + ")" + \
            "".join(_code_key(v, seen) for k, v in sorted(vars(obj).items())
                    if isinstance(v, (types.FunctionType, staticmethod, classmethod)))
    if not isinstance(obj, types.FunctionType):
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", None)
        if not name or not module:
            raise _Uncacheable
        return f"builtin:{module}.{name}"
    if obj.__module__ not in ("__main__", "builtins", None) and not obj.__module__.startswith("<") \
            and obj.__module__ != "dlt_checks":
        return f"lib:{obj.__module__}.{obj.__qualname__}"  # a library function: by name
    if obj.__closure__ and obj.__code__.co_freevars != ("__class__",):  # that one: a method calling super()
        raise _Uncacheable  # values captured from an enclosing call: pass them as arguments
    if id(obj) in seen:
        return f"recursive:{obj.__qualname__}"
    seen.add(id(obj))
    h = hashlib.sha256()

    def walk(code):
        h.update(code.co_code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)
            else:
                h.update(repr(const).encode())
        for name in code.co_names:
            h.update(name.encode())
            if name in obj.__globals__:
                h.update(_data_key(obj.__globals__[name], seen).encode())

    walk(obj.__code__)
    if obj.__closure__:  # the class a super()-calling method belongs to
        h.update(_code_key(obj.__closure__[0].cell_contents, seen).encode())
    h.update(_data_key(obj.__defaults__, seen).encode() + _data_key(obj.__kwdefaults__, seen).encode())
    return h.hexdigest()


def _data_key(obj, seen: set) -> str:
    buf = io.BytesIO()
    try:
        _KeyPickler(buf, seen).dump(obj)
    except _Uncacheable:
        raise
    except Exception as exc:  # noqa: BLE001 -- what cannot be pickled cannot be keyed
        raise _Uncacheable from exc
    return hashlib.sha256(buf.getvalue()).hexdigest()


class GraderChannel:
    """The connection to the grader, which may send the next cell before this one has ended: a
    cell (or the stop, None) that arrives while a `reference()` request waits for its reply
    waits here for its turn."""

    def __init__(self, conn):
        self.conn, self.waiting = conn, []

    def send(self, msg) -> None:
        self.conn.send(msg)

    def next_cell(self):
        return self.waiting.pop(0) if self.waiting else self.conn.recv()

    def reply(self):
        while True:
            msg = self.conn.recv()
            if msg is not None and not (type(msg) is dict and "index" in msg):
                return msg
            self.waiting.append(msg)


class ReferenceCache:
    """`reference()` on the trusted side: a value the grader already holds (computed for an
    earlier submission, or by another grading pair right now) is fetched from it; a new one is
    computed here and handed to it, unless the computation called into the submission."""

    MAX_BYTES = 64 * 2**20

    def __init__(self, remote: Remote, grader: GraderChannel):
        self.remote, self.grader, self.known = remote, grader, {}
        self.in_setup = False  # a read-only cell's values are public: they also go to the child
        self.setup_values: dict[str, bytes] = {}  # those of the read-only cell running now

    def _ask(self, msg: dict):
        """One exchange with the grader, with this side's cell timer held off (a timer firing in
        the middle of a message would leave the channel out of step); it fires after."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self.grader.send(msg)
            return self.grader.reply() if msg["reference"] == "get" else None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    def __call__(self, fn, args, kwargs):
        try:
            key = _data_key((fn, args, sorted(kwargs.items())), set())
        except _Uncacheable:
            return fn(*args, **kwargs)
        blob = self.known.get(key)
        if blob is None:
            reply = self._ask({"reference": "get", "key": key})
            blob = reply.get("blob") if type(reply) is dict else None
        if type(blob) is bytes:
            return self._keep(key, blob)
        before = self.remote.requests
        value = fn(*args, **kwargs)
        blob = None
        if self.remote.requests == before:  # it never called into the submission
            try:
                blob = _value_blob(value)
            except Exception:  # noqa: BLE001
                blob = None
        if blob is None or len(blob) > self.MAX_BYTES:  # not shared: no other submission waits for it
            self._ask({"reference": "abandon", "key": key})
            return value
        self._ask({"reference": "put", "key": key, "blob": blob, "setup": self.in_setup})
        return self._keep(key, blob)  # the same copy every submission gets

    def _keep(self, key: str, blob: bytes):
        self.known[key] = blob
        if self.in_setup:
            self.setup_values[key] = blob
        return pickle.loads(blob)


def serve(conn, child_conn, child_pid: int, req: dict) -> None:  # noqa: C901 -- the cell loop
    """Entry point of the trusted process: run the cells the grader sends, one result each."""
    from ._child import (PR_SET_DUMPABLE, _prctl, die_with_parent, limit_threads, new_shell, redirect_output,
                         thread_environment)

    die_with_parent()
    _prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/mem for other processes of this user
    private = req["private_dir"]
    log_path = os.path.join(private, "trusted.log")
    redirect_output(log_path, 0o600)
    os.environ.update({"MPLBACKEND": "Agg", "HOME": private, "MPLCONFIGDIR": private,
                       **thread_environment(int(req.get("threads", 1)))})
    os.chdir(private)
    import matplotlib
    import torch  # noqa: F401 -- loaded before any test cell runs (reference keys look it up)

    from . import checks

    matplotlib.use("Agg")
    limit_threads(int(req.get("threads", 1)))
    sys.modules["dlt_checks"] = checks
    checks._FORBID_HOOK = lambda names, message: _forbid_in_child(remote, names, message)
    checks._IN_SUBMISSION_HOOK = lambda fn, args, kwargs: _run_in_child(remote, fn, args, kwargs)
    shell = new_shell("trusted")
    remote = Remote(child_conn.fileno(), child_pid, float(req["grace"]))
    remote.cell_timeout = float(req["cell_timeout"])
    grader = GraderChannel(conn)
    references = ReferenceCache(remote, grader)
    checks._REFERENCE_HOOK = references
    try:
        hello = wire.decode(wire.read_frame(remote.fd, time.monotonic() + float(req["startup_timeout"])))
        ok = type(hello) is dict and hello.get("ready") is True
    except (wire.WireError, wire.ChannelTimeout, wire.ChannelClosed, OSError):
        ok = False
    if not ok:
        remote.kill()
    conn.send({"ready": ok})

    def on_alarm(signum, frame):
        raise TimeoutError(f"cell exceeded its time limit of {remote.cell_timeout:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    test_vars: dict = {}
    while ok:
        cell = grader.next_cell()
        if cell is None:
            break
        kind, source, timeout = cell["kind"], cell["source"], float(cell["timeout"])
        remote.deadline = time.monotonic() + timeout
        result = {"index": cell["index"], "ok": True, "error": None, "status": "passed", "violations": [],
                  "tampered": [], "maxrss_kb": 0, "suspicious": None, "line": None}
        remote.student_seconds = 0.0
        status = None  # the child's report after the cell: violations, memory
        t0 = time.perf_counter()
        try:
            if kind in ("solution", "code"):
                reply = remote.request({"op": "exec", "kind": kind, "source": source, "index": cell["index"]})
                status = reply.get("status")
                if not reply["ok"]:
                    result["ok"], result["error"] = False, _format_error(_as_exception(reply["error"]))
            elif kind == "setup":
                references.in_setup = True
                try:
                    status = _run_setup(remote, shell, cell, timeout, result, references)
                finally:
                    references.in_setup = False
            else:
                _run_test(remote, shell, cell, timeout, test_vars, result)
        except ChildLost as exc:
            result.update(ok=False, error=str(exc), status=exc.status, line=_test_line(exc, cell))
        except BaseException as exc:  # noqa: BLE001 -- any failure of a cell is a result
            result.update(ok=False, error=_format_error(exc), line=_test_line(exc, cell))
            if isinstance(exc, checks.SuspiciousValue):
                result["suspicious"] = str(exc)[:300]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if not result["ok"] and result["status"] == "passed":  # this side's clock decides what a timeout is
            result["status"] = "timeout" if time.monotonic() >= remote.deadline - 0.05 else "failed"
        result["seconds"] = time.perf_counter() - t0
        result["student_seconds"] = remote.student_seconds
        if remote.alive and kind != "test" and type(status) is not dict:  # a test cell asked for it already
            try:
                reply = remote.request({"op": "status", "test": False}, extra=10.0)
                status = reply.get("value") if reply["ok"] else None
            except ChildLost as exc:
                result.update(ok=False, error=str(exc), status=exc.status)
        if kind != "test":
            _merge_status(result, status)
        sys.stdout.flush()
        result["alive"] = remote.alive
        conn.send(result)
        if not remote.alive:
            break
    if remote.alive:
        try:
            wire.write_frame(remote.fd, pickle.dumps({"op": "stop"}), time.monotonic() + 2)
        except (wire.ChannelTimeout, wire.ChannelClosed, OSError):
            pass
    remote.kill()
    os._exit(0)


def _run_in_child(remote: Remote, fn, args: tuple, kwargs: dict):
    """`checks.in_submission`: ``fn`` (the test's, by value) called in the student's process, in
    one exchange; its result comes back as plain data, like a student function's."""
    return _call(remote, {"op": "run"}, args, kwargs, fn)


@contextlib.contextmanager
def _forbid_in_child(remote: Remote, names: tuple, message: str):
    remote.value({"op": "forbid", "on": True, "names": list(names), "message": str(message)})
    try:
        yield
    finally:
        if remote.alive:
            remote.value({"op": "forbid", "on": False})


def _as_exception(error: tuple[str, str]) -> BaseException:
    try:
        raise_student_error(error)
    except BaseException as exc:  # noqa: BLE001
        return exc
    return RuntimeError("unreachable")


def _merge_status(result: dict, status) -> None:
    if type(status) is not dict:
        return
    viol = status.get("violations")
    if type(viol) is list:
        result["violations"] = [(str(v[0])[:20], str(v[1])[:300]) for v in viol
                                if type(v) is list and len(v) == 2 and all(type(x) is str for x in v)][:50]
    tampered = status.get("tampered")
    if type(tampered) is list:
        result["tampered"] = [str(t)[:300] for t in tampered if type(t) is str][:50]
    if type(status.get("maxrss_kb")) is int:
        result["maxrss_kb"] = status["maxrss_kb"]


_CALLS_REFERENCE = re.compile(r"\breference\s*\(")  # not merely importing it


def _run_setup(remote: Remote, shell, cell: dict, timeout: float, result: dict, references: ReferenceCache):
    """A read-only cell runs on both sides (the student's code sees the same setup), both at
    once; but one that computes `reference()` values runs here first, and the child is handed
    those values (public course code on public data) instead of computing them again. Returns
    the child's status after the cell, if it sent one."""
    hard = remote.deadline + remote.grace
    msg = {"op": "exec", "kind": "setup", "source": cell["source"], "index": cell["index"], "timeout": timeout,
           "code": cell.get("code")}
    here_first = _CALLS_REFERENCE.search(cell["source"]) is not None
    if not here_first:
        remote.send(msg, hard)
    references.setup_values = {}
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        exec(cell_code(shell, cell), shell.user_ns)
    except BaseException as exc:  # noqa: BLE001
        result.update(ok=False, error=_format_error(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if here_first:
        msg.update(timeout=max(0.01, remote.deadline - time.monotonic()), references=references.setup_values)
        remote.send(msg, hard)
    reply = remote.receive(hard)
    if not reply["ok"] and result["ok"]:
        result.update(ok=False, error="in the submission's process: " + _format_error(_as_exception(reply["error"])))
    return reply.get("status")


def cell_filename(kind: str, index: int, grade_id) -> str:
    """The file name a cell's code is compiled under (tracebacks, `_test_line`)."""
    return f"<test {grade_id}>" if kind == "test" else f"<cell {index}>"


def cell_code(shell, cell: dict):
    """A setup or solution cell's code (IPython's transforms applied): as the grader compiled a
    read-only cell (`sandbox.compiled`), else compiled here."""
    if cell.get("code") and not shell.input_transformers_post:
        return marshal.loads(cell["code"])
    return compile(shell.transform_cell(cell["source"]), cell_filename(cell["kind"], cell["index"], None), "exec")


class SetupGlobals(dict):
    """The namespace of the read-only cells on this side. While a test runs, a name it lacks is
    looked up in the submission: a helper of a read-only cell may call the student's function."""

    remote: Remote | None = None

    def __missing__(self, name: str):
        remote = self.remote
        if remote is None or not remote.alive or hasattr(builtins, name) or name.startswith("__"):
            raise KeyError(name)
        found = remote.value({"op": "lookup", "names": [name]})
        if type(found) is dict and name in found:
            return found[name]  # not kept: the next cell asks again
        raise KeyError(name)


def _test_line(exc: BaseException, cell: dict) -> int | None:
    """The line of a test cell's own top level (1-based) that was running when ``exc`` ended it;
    None for other cells, or when the test's code was not running (this side's frames only)."""
    if cell["kind"] != "test":
        return None
    name = cell_filename("test", cell["index"], cell.get("grade_id"))
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == name and frame.f_code.co_name == "<module>":
            return lineno
    return None


def _run_test(remote: Remote, shell, cell: dict, timeout: float, test_vars: dict, result: dict) -> None:
    """Run a test cell here, with the submission's names it uses fetched as plain data or proxies."""
    code = marshal.loads(cell["code"]) if cell.get("code") else \
        compile(cell["source"], cell_filename("test", cell["index"], cell.get("grade_id")), "exec")
    ns = dict(shell.user_ns)
    ns.update(test_vars)
    wanted = sorted(n for n in _names(code) if n not in ns and not hasattr(builtins, n)
                    and not (n.startswith("__") and n.endswith("__")))
    fetched = {}
    if wanted:  # the child enters the test phase, then looks the names up: one exchange
        found = remote.value({"op": "lookup", "names": wanted, "phase": "test"})
        if type(found) is dict:
            fetched = {k: v for k, v in found.items() if type(k) is str and k in wanted}
            ns.update(fetched)
    else:
        remote.value({"op": "phase", "phase": "test"})
    try:
        # the student's calls time out in their own process first (and report it); this is the backstop
        signal.setitimer(signal.ITIMER_REAL, max(0.01, remote.deadline + remote.grace - time.monotonic()))
        if isinstance(shell.user_ns, SetupGlobals):
            shell.user_ns.remote = remote
        exec(code, ns)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(shell.user_ns, SetupGlobals):
            shell.user_ns.remote = None
        for key, value in ns.items():  # what this test defined is visible to later tests
            if (key not in shell.user_ns or shell.user_ns[key] is not value) and not (
                    key in fetched and fetched[key] is value):
                test_vars[key] = value
        if remote.alive:
            status = remote.request({"op": "status", "test": True}, extra=10.0)
            if status["ok"]:
                _merge_status(result, status.get("value"))
