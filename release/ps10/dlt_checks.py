"""Comparison helpers shared by every problem set's tests.

This one file is copied next to each released notebook as ``dlt_checks.py``
(students import it from there) and is used by the unit tests of ``solutions``.
Checks run in a fixed order -- type, then shape, then dtype, then values -- and
every failure message says what is wrong and where.

Only the standard library, numpy and (optionally) torch are needed.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import numbers

import numpy as np

try:  # torch is optional for the helper itself
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = [
    "TOLERANCES",
    "CheckError",
    "assert_close",
    "assert_dtype",
    "assert_finite",
    "assert_less",
    "assert_shape",
    "assert_true",
    "figure",
    "forbid",
    "in_submission",
    "reference",
    "to_numpy",
]

# (rtol, atol) keyed by the *coarser* dtype of the two compared arrays.
TOLERANCES = {
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float32": (1e-4, 1e-5),
    "float64": (1e-7, 1e-9),
    "int": (0.0, 0.0),
    "bool": (0.0, 0.0),
}


class CheckError(AssertionError):
    """A failed check; its message is meant for the student."""


class SuspiciousValue(CheckError):
    """A returned object was built to fool the checks (the grader flags the submission)."""


_ARRAY_TYPES = (np.ndarray,)
_SCALAR_TYPES = (numbers.Number, np.number, np.bool_, bool)


def _is_tensor(x) -> bool:
    # exact types only: an object that only pretends to be a tensor is rejected
    return torch is not None and type(x) in (torch.Tensor, torch.nn.Parameter)


def _dtype_key(x) -> str:
    if _is_tensor(x):
        name = str(x.dtype).replace("torch.", "")
    else:
        name = np.asarray(x).dtype.name
    if name.startswith(("int", "uint")):
        return "int"
    if name.startswith("complex"):
        return "float64" if "128" in name else "float32"
    return name if name in TOLERANCES else "float64"


def to_numpy(x, name: str = "value") -> np.ndarray:
    """Convert an array-like result to a fresh float/int/bool ``numpy`` array.

    Accepts exactly: ``numpy.ndarray``, ``torch.Tensor`` (or ``Parameter``), Python or
    numpy scalars, and (nested) lists/tuples of numbers. Anything else -- including
    objects that overload comparisons -- raises ``CheckError``.
    """
    if _is_tensor(x):
        return x.detach().cpu().resolve_conj().numpy().copy()
    if type(x) is np.ndarray:
        if x.dtype == object:
            raise CheckError(f"{name}: expected a numeric array, got an array of Python objects")
        return np.array(x, copy=True)
    if isinstance(x, _SCALAR_TYPES) and type(x).__module__ in ("builtins", "numpy"):
        return np.array(x)
    if type(x) in (list, tuple):
        arr = np.array([to_numpy(v, name) for v in x]) if len(x) else np.zeros(0)
        return arr
    overrides = [m for m in ("__eq__", "__bool__", "__array__", "__float__", "__array_ufunc__", "__torch_function__")
                 if any(m in vars(k) for k in type(x).__mro__[:-1])]
    if overrides and (type(x).__module__ == "__main__" or type(x).__module__.startswith("<")):
        raise SuspiciousValue(f"{name}: suspicious: an object of a class that overrides {', '.join(overrides)} "
                         "was returned instead of an array")
    kind = f"{type(x).__module__}.{type(x).__qualname__}"
    describe = getattr(type(x), "__dlt_describe__", None)  # an object that stays in the submission's process
    if describe is not None:
        kind, remote_overrides = describe(x)
        if remote_overrides:
            raise SuspiciousValue(f"{name}: suspicious: an object of a class that overrides {remote_overrides} "
                             "was returned instead of an array")
    raise CheckError(f"{name}: expected a numpy array, torch tensor or number, got {kind}")


def assert_true(condition, message: str) -> None:
    """Assert a plain boolean condition; ``message`` says what went wrong."""
    if type(condition) not in (bool, np.bool_) and not (_is_tensor(condition) and condition.numel() == 1):
        raise CheckError(f"internal check received a non-boolean condition ({type(condition).__name__})")
    if not bool(condition):
        raise CheckError(message)


def assert_shape(actual, shape, name: str = "value") -> None:
    """Check type and shape; ``shape`` is a tuple of ints (``None`` matches any size)."""
    arr = to_numpy(actual, name)
    shape = tuple(shape)
    ok = arr.ndim == len(shape) and all(e is None or a == e for a, e in zip(arr.shape, shape))
    if not ok:
        raise CheckError(f"wrong shape for {name}: yours {tuple(arr.shape)}, expected {shape}")


def assert_dtype(actual, dtype, name: str = "value") -> None:
    """Check the dtype of a tensor or array, e.g. ``assert_dtype(x, torch.float64)``."""
    if _is_tensor(actual):
        got = actual.dtype
    else:
        got = to_numpy(actual, name).dtype
    want = str(dtype).replace("torch.", "") if torch is not None and isinstance(dtype, torch.dtype) \
        else np.dtype(dtype).name
    if str(got).replace("torch.", "") != want:
        raise CheckError(f"wrong dtype for {name}: yours {got}, expected {dtype}")


def assert_finite(actual, name: str = "value") -> None:
    """Every entry is finite (no NaN or infinity)."""
    arr = to_numpy(actual, name)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = tuple(int(i) for i in bad[0]) if bad.size else ()
        raise CheckError(f"{name} has {len(bad)} non-finite entries, first at index {where}")


def assert_close(actual, expected, name: str = "value", rtol: float | None = None, atol: float | None = None) -> None:
    """Compare ``actual`` with ``expected`` entrywise: type, shape, finiteness, values.

    Passes when ``|actual - expected| <= atol + rtol * |expected|`` everywhere. Default
    tolerances come from ``TOLERANCES`` keyed by the coarser of the two dtypes. On
    failure the message names the worst entry with its absolute and relative error.
    """
    a = to_numpy(actual, name)
    e = to_numpy(expected, f"expected {name}")
    if a.shape != e.shape:
        raise CheckError(f"wrong shape for {name}: yours {tuple(a.shape)}, expected {tuple(e.shape)}")
    keys = [_dtype_key(actual), _dtype_key(expected)]
    order = ["float16", "bfloat16", "float32", "float64", "int", "bool"]
    key = min(keys, key=order.index)
    d_rtol, d_atol = TOLERANCES[key]
    rtol = d_rtol if rtol is None else float(rtol)
    atol = d_atol if atol is None else float(atol)
    if a.dtype == bool or e.dtype == bool:
        a, e = a.astype(np.int64), e.astype(np.int64)
    a = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    e = e.astype(np.complex128 if e.dtype.kind == "c" else np.float64)
    if a.size == 0:
        return
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if np.any(nan_a != nan_e):
        idx = tuple(int(i) for i in np.argwhere(nan_a != nan_e)[0])
        raise CheckError(f"{name}: NaN mismatch at index {idx}: yours {a[idx]}, expected {e[idx]}")
    both = ~(nan_a | nan_e)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(both, np.abs(a - e), 0.0)
        err = np.where(both & np.isinf(e) & (a == e), 0.0, err)
    allowed = atol + rtol * np.abs(np.where(both, e, 0.0))
    excess = err - allowed
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if a.ndim else ()
    if float(excess[worst]) > 0 or not math.isfinite(float(excess[worst])):
        abs_err = float(err[worst])
        denom = float(np.abs(e[worst]))
        rel = abs_err / denom if denom > 0 else math.inf
        n_bad = int(np.sum(excess > 0))
        where = f" at index {tuple(int(i) for i in worst)}" if a.ndim else ""
        raise CheckError(
            f"{name} is off{where}: yours {a[worst]:.6g}, expected {e[worst]:.6g} "
            f"(abs error {abs_err:.3g}, rel error {rel:.3g}; rtol={rtol:g}, atol={atol:g}; "
            f"{n_bad} of {a.size} entries out of tolerance)"
        )


def assert_less(actual, bound, name: str = "value") -> None:
    """A scalar ``actual`` is strictly below ``bound``."""
    a = to_numpy(actual, name)
    if a.size != 1:
        raise CheckError(f"{name}: expected a scalar, got shape {tuple(a.shape)}")
    v = float(a.reshape(-1)[0])
    if not (v < float(bound)):
        raise CheckError(f"{name} = {v:.6g}, expected below {float(bound):.6g}")


@contextlib.contextmanager
def figure(*exercises: str):
    """Run an ungraded figure or demo cell: ``with figure("ex3"): ...``.

    While an exercise it uses is unfinished (its stub raises ``NotImplementedError``), the block
    stops there and prints one line instead of failing, so "Run All" goes on to the next cell.
    Any other exception propagates. ``exercises``: the grade_id prefixes the cell uses ("ex3")."""
    try:
        yield
    except NotImplementedError as exc:
        tb, fn = exc.__traceback__, None
        while tb is not None:  # the innermost frame is the unfinished function
            fn, tb = tb.tb_frame.f_code.co_name, tb.tb_next
        nums = [e[2:] for e in exercises if e[:2] == "ex" and e[2:].isdigit()]
        if nums and len(nums) == len(exercises):
            what = f"exercise{'s' * (len(nums) > 1)} {', '.join(nums[:-1])}{' and ' * (len(nums) > 1)}{nums[-1]}"
        else:
            what = " and ".join(exercises) or "the exercises above"
        why = f" ({fn} is not implemented yet)" if fn and not fn.startswith("<") else ""
        print(f"Figure skipped: finish {what} first{why}")


# --- students: check a notebook before submitting it (`python dlt_checks.py psNN.ipynb`) ---

def check_notebook(path: str, max_mb: float = 20.0) -> list[str]:
    """Problems that would cost points at grading time, found without running anything."""
    import ast
    import json
    import os

    size = os.path.getsize(path)
    if size == 0:
        return ["the file is empty"]
    if size > max_mb * 2**20:
        return [f"the file is {size / 2**20:.0f} MB: clear all outputs (Kernel > Restart & Clear Output) and save"]
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not a notebook ({type(exc).__name__}): submit the .ipynb file saved by Jupyter"]
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if meta.get("solution") and "raise NotImplementedError()" in src:
            problems.append(f"{gid}: not implemented yet")
        body = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            ast.parse(body)
        except SyntaxError as exc:
            problems.append(f"cell {i}{f' ({gid})' if gid else ''}: syntax error on line {exc.lineno}: {exc.msg}")
    if not any(c.get("metadata", {}).get("nbgrader", {}).get("solution") for c in nb.get("cells", [])):
        problems.append("no answer cells found: work in the released notebook, do not copy cells into a new one")
    return problems + locked_cell_changes(path, nb)


def locked_fingerprints(nb: dict) -> dict:
    """grade_id -> sha256 of the source of each locked (read-only or test) cell of a notebook."""
    import hashlib

    out = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked") and not meta.get("solution") and meta.get("grade_id"):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            out[meta["grade_id"]] = hashlib.sha256(src.encode("utf-8")).hexdigest()
    return out


def locked_cell_changes(path: str, nb: dict) -> list[str]:
    """Locked cells edited or deleted since the release (compared with ``<notebook>.locked.json``,
    shipped beside it). Grading uses the original cells whatever the notebook holds, so local
    test results of an edited notebook are not what the grader will see."""
    import glob
    import json
    import os

    folder = os.path.dirname(os.path.abspath(path))
    released = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".locked.json")
    if not os.path.exists(released):  # a renamed notebook: the one fingerprint file of its folder
        others = glob.glob(os.path.join(glob.escape(folder), "*.locked.json"))
        if len(others) != 1:
            return []
        released = others[0]
    with open(released, encoding="utf-8") as f:
        expected = json.load(f)
    found = locked_fingerprints(nb)
    problems = []
    for gid, digest in expected.items():
        if gid not in found:
            problems.append(f"{gid}: this locked cell was deleted; grading uses the released one "
                            "(copy it back from the released notebook)")
        elif found[gid] != digest:
            problems.append(f"{gid}: this locked cell was edited; grading uses the released one, so your local "
                            "test results may differ (copy it back from the released notebook)")
    return problems


def _main(argv) -> int:
    import os

    usage = ("usage: python dlt_checks.py psNN.ipynb\n"
             "Checks a notebook before you submit it: unfinished exercises, syntax errors, edited or\n"
             "deleted locked cells, a file too large to grade. It runs nothing.")
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if not os.path.isfile(argv[0]):
        print(f"no such file: {argv[0]} (give the path of your .ipynb)")
        return 2
    found = check_notebook(argv[0])
    for line in found:
        print("-", line)
    print("ready to submit" if not found else f"{len(found)} thing(s) to look at before submitting")
    return 1 if found else 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))


# Set by the grader, whose tests run in another process than the student's code: applies
# `forbid` where the student's code runs.
_FORBID_HOOK = None
# Set by the grader: reuses a reference value computed for an earlier submission of the batch.
_REFERENCE_HOOK = None


def reference(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``: an expected value the test computes itself, from its own data.

    Pass every input as an argument. A grader may compute it once per batch and hand the
    same value to every submission's tests (it does so only when ``fn`` and the arguments are
    plain data and code, and the computation did not call into the submission); anywhere
    else it is just the call."""
    if _REFERENCE_HOOK is not None:
        return _REFERENCE_HOOK(fn, args, kwargs)
    return fn(*args, **kwargs)


# Set by the grader: runs the function where the student's code runs.
_IN_SUBMISSION_HOOK = None


def in_submission(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, run where the student's code runs: for a loop of many calls into
    the student's functions, which a grader keeping tests and student code apart would
    otherwise pass across one by one. Its result is the submission's output like any other:
    check it afterwards, never inside ``fn``. ``fn`` and its arguments reach the student's
    code, so no expected values in them; arguments it changes in place are changed here too.
    Anywhere else it is just the call."""
    if _IN_SUBMISSION_HOOK is not None:
        return _IN_SUBMISSION_HOOK(fn, args, kwargs)
    return fn(*args, **kwargs)


def _forbid_patch(names, message: str):
    """Replace each dotted name ("torch.autograd.grad") by a function raising AssertionError(message);
    returns a function that puts the originals back."""
    saved = []

    def refuse(*args, **kwargs):
        raise AssertionError(message)

    for dotted in names:
        module_name, _, attr = str(dotted).rpartition(".")
        module = importlib.import_module(module_name)
        saved.append((module, attr, getattr(module, attr)))
        setattr(module, attr, refuse)

    def restore():
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)

    return restore


@contextlib.contextmanager
def forbid(names, message: str):
    """Within the block, the student's code cannot call any of ``names`` (dotted paths such as
    ``"torch.autograd.grad"``): such a call raises ``AssertionError(message)``. For exercises
    that must be done by hand. A rule of the exercise, not a defence: it holds for code that
    calls the library by these names."""
    if _FORBID_HOOK is not None:
        with _FORBID_HOOK(tuple(names), message):
            yield
        return
    restore = _forbid_patch(names, message)
    try:
        yield
    finally:
        restore()

