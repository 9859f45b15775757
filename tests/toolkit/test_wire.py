"""The plain-data codec between the student's process and the tests' process: what it carries
comes back with its exact type and value, and what the student's process could write instead
(any bytes) is rejected as a WireError, never decoded into anything else."""

import math
import random

import numpy as np
import pytest
import torch

from coursekit import wire


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return (a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
                and torch.equal(a.detach(), b.detach()))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


VALUES = [
    None, True, False, 0, -7, 2**200, -(2**70), 0.5, -0.0, float("inf"), float("nan"), 1e-310, 3 - 4j,
    "", "héllo ∑", b"\x00\xff", [], (), {}, [1, [2, (3, None)]], (1.5, "a"), {"a": 1, 2: [3], None: (), (1, "x"): 2.0},
    np.arange(6, dtype=np.float64).reshape(2, 3), np.arange(6, dtype=np.int32).reshape(3, 2).T,
    np.array(3.5), np.zeros((0, 4), dtype=np.float32), np.array([True, False]), np.float64(2.5), np.int64(-3),
    np.dtype("float32"), torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor(1.0, dtype=torch.float64),
    torch.zeros(0, 3), torch.ones(3, dtype=torch.bool), torch.arange(4).reshape(2, 2).T,
    torch.ones(2, requires_grad=True), torch.nn.Parameter(torch.ones(2, 2)), torch.ones(3, dtype=torch.bfloat16),
    torch.Size([2, 3]), torch.float64, {"value": torch.eye(2), "ok": True, "error": None},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_plain_data_comes_back_with_its_exact_type_and_value(value):
    assert same(wire.decode(wire.encode(value)), value)


def test_objects_that_are_not_plain_data_need_a_handle():
    with pytest.raises(wire.WireError):
        wire.encode(object())
    made = wire.decode(wire.encode([len], lambda obj: wire.Handle(7, "builtin_function_or_method", True)),
                       lambda h: ("proxy", h.id, h.type_name, h.is_callable))
    assert made == [("proxy", 7, "builtin_function_or_method", True)]
    with pytest.raises(wire.WireError):  # a handle where the reader expects none
        wire.decode(wire.encode([len], lambda obj: wire.Handle(7, "f", True)))


@pytest.mark.parametrize("data", [
    b"", b"?", b"N" + b"N", b"i" + (3).to_bytes(8, "big") + b"1x3", b"s" + (10).to_bytes(8, "big") + b"abc",
    b"l" + (2**40).to_bytes(8, "big"), b"d" + (1).to_bytes(8, "big") + b"l" + (0).to_bytes(8, "big") + b"N",
    b"A" + (3).to_bytes(8, "big") + b"|O8" + (1).to_bytes(8, "big") + (1).to_bytes(8, "big") + (8).to_bytes(8, "big")
    + bytes(8),
    b"A" + (3).to_bytes(8, "big") + b"<f8" + (1).to_bytes(8, "big") + (3).to_bytes(8, "big") + (8).to_bytes(8, "big")
    + bytes(8),
    b"l" + (1).to_bytes(8, "big") + b"l" + (1).to_bytes(8, "big") + b"N" + b"N",
], ids=["empty", "unknown tag", "trailing bytes", "bad integer", "truncated text", "huge list", "list as dict key",
        "object dtype", "size does not match shape", "trailing after nested"])
def test_malformed_values_are_rejected(data):
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_nesting_deeper_than_the_limit_is_rejected():
    deep = None
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError):
        wire.encode(deep)
    data = b"l" + (1).to_bytes(8, "big")
    with pytest.raises(wire.WireError):
        wire.decode(data * (wire.MAX_DEPTH + 5) + b"N")


def test_any_bytes_decode_to_plain_data_or_a_wire_error():
    """What a student's process may write in place of a reply: every truncation and thousands of
    random corruptions of real replies either decode (to plain data) or raise WireError."""
    rng = random.Random(0)
    samples = [wire.encode(v) for v in VALUES]
    plain = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, np.ndarray, np.generic, np.dtype,
             torch.Tensor, torch.Size, torch.dtype)
    tried = 0
    for data in samples:
        cases = [data[:k] for k in range(len(data))]
        for _ in range(60):
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                if b:
                    b[rng.randrange(len(b))] = rng.randrange(256)
            cases.append(bytes(b))
        for case in cases:
            tried += 1
            try:
                value = wire.decode(case)
            except wire.WireError:
                continue
            assert isinstance(value, plain), (case, type(value))
    assert tried > 2000
