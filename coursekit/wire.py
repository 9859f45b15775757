"""What crosses between the trusted grader and the untrusted student process.

Two parts, used by both sides:

- **Frames with deadlines.** A frame is an 8-byte big-endian length and a body. The trusted
  side reads and writes with a deadline (non-blocking file descriptors and ``select``): a
  peer that stalls, writes half a frame or a garbage length is a failed call, never a hang.
- **Plain data, rebuilt from raw bytes.** ``encode`` writes only exact built-in types (None,
  bool, int, float, complex, str, bytes, list, tuple, dict), numpy arrays and scalars of
  numeric dtypes, torch tensors (dtype, shape, raw buffer), ``torch.Size`` and dtypes; any
  other object becomes a :class:`Handle` (it stays in the process that owns it). ``decode``
  rebuilds exactly those types and nothing else: no pickle, no student class, no method of
  the sender's is ever run by the receiver.
"""

from __future__ import annotations

import os
import re
import select
import struct
import time

MAX_FRAME = 2**31  # 2 GiB: more than any array a problem set returns
MAX_DEPTH = 64
MAX_ITEMS = 10_000_000

_NUMPY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "complex64", "complex128")
_TORCH_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16", "float32", "float64",
                 "complex64", "complex128")
_U64 = struct.Struct(">Q")
_DTYPE_TEXT = re.compile(r"[<>|=][a-z][0-9]{1,2}")  # numpy's dtype.str: byte order, kind, item size


class WireError(ValueError):
    """A frame or a value that does not follow the protocol."""


class ChannelTimeout(TimeoutError):
    """The peer did not answer in time."""


class ChannelClosed(EOFError):
    """The peer went away."""


# --------------------------------------------------------------------------- frames

def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def write_frame(fd: int, body: bytes, deadline: float | None = None) -> None:
    data = memoryview(struct.pack(">Q", len(body)) + body)
    while data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout("the other process did not read in time")
            _, ready, _ = select.select([], [fd], [], left)
            if not ready:
                continue
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed("the other process went away") from exc
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout("no complete answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
        try:
            chunk = os.read(fd, min(n - got, 1 << 22))
        except BlockingIOError:
            continue
        except ConnectionResetError as exc:
            raise ChannelClosed("the other process went away") from exc
        if not chunk:
            raise ChannelClosed("the other process went away")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, max_bytes: int = MAX_FRAME) -> bytes:
    (size,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    if size > max_bytes:
        raise WireError(f"frame of {size} bytes announced (limit {max_bytes})")
    return _read_exact(fd, size, deadline)


# --------------------------------------------------------------------------- values

class Handle:
    """Reference to an object that stays in the process that owns it."""

    __slots__ = ("id", "type_name", "is_callable", "overrides")

    def __init__(self, id: int, type_name: str, is_callable: bool, overrides: str = ""):
        # overrides: comparison/conversion methods a notebook-defined class overrides (for the report)
        self.id, self.type_name, self.is_callable, self.overrides = id, type_name, is_callable, overrides


def encode(value, make_handle=None) -> bytes:
    """``value`` -> bytes. ``make_handle(obj) -> Handle`` for objects that are not plain data
    (without it they raise WireError)."""
    out: list[bytes] = []
    _enc(value, out, make_handle, 0)
    return b"".join(out)


def _str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return _U64.pack(len(b)) + b


def _enc(v, out: list, make_handle, depth: int) -> None:  # noqa: C901 -- one branch per type
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(v)
    if v is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if v else b"F")
    elif t is int:
        out.append(b"i" + _str(str(v)))
    elif t is float:
        out.append(b"f" + struct.pack(">d", v))
    elif t is complex:
        out.append(b"c" + struct.pack(">dd", v.real, v.imag))
    elif t is str:
        out.append(b"s" + _str(v))
    elif t is bytes:
        out.append(b"b" + struct.pack(">Q", len(v)) + v)
    elif t in (list, tuple):
        out.append((b"l" if t is list else b"t") + struct.pack(">Q", len(v)))
        for item in v:
            _enc(item, out, make_handle, depth + 1)
    elif t is dict:
        out.append(b"d" + struct.pack(">Q", len(v)))
        for key, item in v.items():
            _enc(key, out, make_handle, depth + 1)
            _enc(item, out, make_handle, depth + 1)
    else:
        special = _enc_array(v, t)
        if special is not None:
            out.append(special)
            return
        if t.__module__ == "torch.return_types":  # e.g. torch.linalg.eigh(...): a named tuple of tensors
            _enc(tuple(v), out, make_handle, depth)
            return
        if make_handle is None:
            raise WireError(f"not plain data: {t.__module__}.{t.__qualname__}")
        h = make_handle(v)
        out.append(b"H" + struct.pack(">Q", h.id) + _str(h.type_name) + (b"1" if h.is_callable else b"0")
                   + _str(h.overrides))


def _enc_array(v, t) -> bytes | None:
    np = _numpy()
    if np is not None:
        if t is np.ndarray and v.dtype.name in _NUMPY_DTYPES:
            a = v if v.flags["C_CONTIGUOUS"] else v.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
            return (b"A" + _str(a.dtype.str) + struct.pack(">Q", a.ndim) + struct.pack(f">{a.ndim}Q", *a.shape)
                    + struct.pack(">Q", a.nbytes) + a.tobytes())
        if isinstance(v, np.generic) and t.__module__ == "numpy" and np.dtype(t).name in _NUMPY_DTYPES:
            a = np.asarray(v)
            return b"S" + _str(a.dtype.str) + struct.pack(">Q", a.nbytes) + a.tobytes()
        if t is np.dtype or isinstance(v, np.dtype) and t.__module__.startswith("numpy"):
            if v.name in _NUMPY_DTYPES:
                return b"D" + _str(v.name)
    torch = _torch()
    if torch is not None:
        if t in (torch.Tensor, torch.nn.Parameter) and v.layout == torch.strided and not v.is_quantized \
                and str(v.dtype).replace("torch.", "") in _TORCH_DTYPES and v.device.type == "cpu":
            x = v.detach().resolve_conj().resolve_neg().contiguous()
            name = str(x.dtype).replace("torch.", "")
            raw = (x.view(torch.int16) if x.dtype == torch.bfloat16 else x).numpy().tobytes()
            flags = (b"P" if t is torch.nn.Parameter else b"-") + (b"g" if v.requires_grad else b"-")
            return (b"X" + flags + _str(name) + struct.pack(">Q", x.dim()) + struct.pack(f">{x.dim()}Q", *x.shape)
                    + struct.pack(">Q", len(raw)) + raw)
        if t is torch.Size:
            return b"Z" + struct.pack(">Q", len(v)) + struct.pack(f">{len(v)}Q", *v)
        if t is torch.dtype and str(v).replace("torch.", "") in _TORCH_DTYPES:
            return b"Y" + _str(str(v).replace("torch.", ""))
    return None


def _numpy():
    import sys

    return sys.modules.get("numpy")


def _torch():
    import sys

    return sys.modules.get("torch")


class _Reader:
    def __init__(self, data: bytes, make_proxy):
        self.data = data if type(data) is bytes else bytes(data)
        self.end, self.pos, self.make_proxy, self.items = len(self.data), 0, make_proxy, 0

    def take(self, n: int) -> bytes:
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise WireError("truncated value")
        self.pos = stop
        return self.data[start:stop]

    def u64(self) -> int:
        start = self.pos
        if start + 8 > self.end:
            raise WireError("truncated value")
        self.pos = start + 8
        return _U64.unpack_from(self.data, start)[0]

    def text(self) -> str:
        try:
            return self.take(self.u64()).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise WireError("invalid text") from exc

    def count(self, n: int) -> int:
        self.items += n
        if self.items > MAX_ITEMS or n > len(self.data):
            raise WireError("too many items")
        return n

    def value(self, depth: int = 0):  # noqa: C901 -- one branch per tag
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        tag = self.take(1)
        if tag == b"s":  # the commonest first: a reply is a dict of str keys
            return self.text()
        if tag == b"d":
            return self._dict(depth)
        if tag == b"N":
            return None
        if tag in (b"T", b"F"):
            return tag == b"T"
        if tag == b"i":
            s = self.text()
            if len(s) > 5000 or not s.lstrip("-").isdigit():
                raise WireError("invalid integer")
            return int(s)
        if tag == b"f":
            return struct.unpack(">d", self.take(8))[0]
        if tag == b"c":
            re_, im = struct.unpack(">dd", self.take(16))
            return complex(re_, im)
        if tag == b"b":
            return self.take(self.u64())
        if tag in (b"l", b"t"):
            n = self.count(self.u64())
            items = [self.value(depth + 1) for _ in range(n)]
            return items if tag == b"l" else tuple(items)
        if tag == b"A":
            np = _numpy_import()
            dtype = self._np_dtype(self.text())
            shape = self._shape()
            raw = self.take(self.u64())
            if len(raw) != dtype.itemsize * _prod(shape):
                raise WireError("array size does not match its shape")
            return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if tag == b"S":
            np = _numpy_import()
            dtype = self._np_dtype(self.text())
            raw = self.take(self.u64())
            if len(raw) != dtype.itemsize:
                raise WireError("scalar size does not match its dtype")
            return np.frombuffer(raw, dtype=dtype)[0]
        if tag == b"D":
            np = _numpy_import()
            name = self.text()
            if name not in _NUMPY_DTYPES:
                raise WireError("invalid dtype")
            return np.dtype(name)
        if tag == b"X":
            import torch

            flags = self.take(2)
            name = self.text()
            if name not in _TORCH_DTYPES or flags[0:1] not in b"P-" or flags[1:2] not in b"g-":
                raise WireError("invalid tensor header")
            dtype = getattr(torch, name)
            shape = self._shape()
            raw = self.take(self.u64())
            n = _prod(shape)
            if len(raw) != n * dtype.itemsize:
                raise WireError("tensor size does not match its shape")
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if n else torch.empty(0, dtype=dtype)
            x = flat.reshape(shape).clone()
            if flags[0:1] == b"P":
                return torch.nn.Parameter(x, requires_grad=flags[1:2] == b"g")
            return x.requires_grad_() if flags[1:2] == b"g" and x.is_floating_point() else x
        if tag == b"Z":
            import torch

            return torch.Size(self._dims())
        if tag == b"Y":
            import torch

            name = self.text()
            if name not in _TORCH_DTYPES:
                raise WireError("invalid dtype")
            return getattr(torch, name)
        if tag == b"H":
            hid = self.u64()
            type_name = self.text()[:200]
            flag = self.take(1)
            overrides = self.text()[:200]
            if flag not in (b"0", b"1") or self.make_proxy is None:
                raise WireError("unexpected handle")
            return self.make_proxy(Handle(hid, type_name, flag == b"1", overrides))
        raise WireError(f"unknown tag {tag!r}")

    def _dict(self, depth: int) -> dict:
        n = self.count(self.u64())
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if type(key) not in (str, int, float, bool, tuple, type(None)):
                raise WireError("invalid dict key")
            out[key] = self.value(depth + 1)
        return out

    def _dims(self) -> tuple:
        nd = self.u64()
        if nd > 64:
            raise WireError("too many dimensions")
        return struct.unpack(f">{nd}Q", self.take(8 * nd))

    def _shape(self) -> tuple:
        shape = self._dims()
        if _prod(shape) > MAX_FRAME:
            raise WireError("array too large")
        return shape

    @staticmethod
    def _np_dtype(text: str):
        if not _DTYPE_TEXT.fullmatch(text):  # before numpy parses it (it reads e.g. "," with ast)
            raise WireError("invalid dtype")
        np = _numpy_import()
        try:
            dtype = np.dtype(text)
        except TypeError as exc:
            raise WireError("invalid dtype") from exc
        if dtype.name not in _NUMPY_DTYPES or dtype.hasobject:
            raise WireError("invalid dtype")
        return dtype


def _numpy_import():
    import numpy

    return numpy


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def decode(data: bytes, make_proxy=None):
    """bytes -> value, rebuilt with exact types; ``make_proxy(Handle)`` builds what a handle
    becomes. Whatever the bytes, the only error is a WireError."""
    r = _Reader(data, make_proxy)
    try:
        value = r.value()
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, SyntaxError, RecursionError, struct.error) as exc:
        raise WireError(f"invalid value ({type(exc).__name__})") from exc
    if r.pos != r.end:
        raise WireError("trailing bytes after the value")
    return value
