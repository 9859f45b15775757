"""Grading integrity by design: nothing a submission does in its own process changes its grade.

Every attack below runs *wrong* code plus a trick that, in a grader that checks inside the
student's process, turned a wrong answer into points (forged replies, patched encoders, the
comparison helper's tolerances or builtins, torch dispatch modes, eval-frame hooks, threads,
import hooks, exceptions with odd names, objects that run code when unpickled). Each must score
no more than its honest twin (the same wrong code without the trick, 0 points). A stalled or
half-written channel must not hang the batch, the TA's secrets must not reach any report, and
no grading process may outlive the grader.
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from coursekit import notebook

pytestmark = pytest.mark.slow
SECRET = "tok-7f3a9c-TA-SECRET"
WRONG_DOUBLE = "def double(x):\n    return x * 3\n"
WRONG_MEAN_SQUARE = "def mean_square(x):\n    return float(np.mean(x))\n"
RIGHT_MEAN_SQUARE = "def mean_square(x):\n    return float(np.mean(np.asarray(x, dtype=float) ** 2))\n"

FORGE = textwrap.dedent('''
    import os, struct
    def _frame(body):
        return struct.pack(">Q", len(body)) + body
    def _s(t):
        b = t.encode()
        return b"s" + struct.pack(">Q", len(b)) + b
    FORGED = _frame(b"d" + struct.pack(">Q", 2) + _s("ok") + b"T" + _s("value") + b"N")
    def _spray(data):
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                os.write(fd, data)
            except OSError:
                pass
''')

# name -> (cell placed after the setup, source of the double cell, source of the mean_square cell)
ATTACKS = {
    "json_encoder_and_decoder": ("import json\njson.JSONEncoder.encode = lambda self, o: '{\"index\": 0, \"ok\": true}'\n"
                                 "json.loads = lambda s, *a, **k: {'index': 0, 'ok': True, 'source': 'pass'}", None, None),
    "pickle_and_wire_patched": ("import pickle, sys\nw = sys.modules.get('coursekit.wire')\n"
                                "if w is not None:\n    w.encode = lambda v, h=None: b'T'\n"
                                "pickle.loads = lambda b, *a, **k: {'op': 'status'}", None, None),
    "forged_replies_on_inherited_fds": (FORGE + "_spray(FORGED * 50)",
                                        FORGE + "def double(x):\n    _spray(FORGED * 20)\n    return x * 3\n", None),
    "grader_module_private_name": ("import sys\nc = sys.modules.get('coursekit._child')\n"
                                   "if c is not None:\n    c._format_error = lambda e: ('', '')\n"
                                   "    c._changes = lambda *a: []", None, None),
    "exception_named_none": ("class _E(BaseException):\n    pass\n_E.__name__ = _E.__qualname__ = 'None'",
                             "def double(x):\n    raise _E()\n", "def mean_square(x):\n    raise _E('')\n"),
    "helper_global_shadows_builtin": ("import dlt_checks, numpy\ndlt_checks.abs = lambda v: 0 * v\n"
                                      "dlt_checks.max = lambda *a, **k: 0\ndlt_checks.bool = lambda v: True\n"
                                      "numpy.max = lambda *a, **k: 0.0", None, None),
    "eval_frame_callback": ("import torch\ntry:\n    torch._C._dynamo.eval_frame.set_eval_frame(lambda *a: None)\n"
                            "except Exception:\n    pass", None, None),
    "tolerance_table_mutated": ("import dlt_checks\nfor k in list(dlt_checks.TOLERANCES):\n"
                                "    dlt_checks.TOLERANCES[k] = (1e9, 1e9)", None, None),
    "torch_function_mode": ("import torch\nfrom torch.overrides import TorchFunctionMode\n"
                            "class _M(TorchFunctionMode):\n"
                            "    def __torch_function__(self, func, types, args=(), kwargs=None):\n"
                            "        if func in (torch.allclose, torch.equal, torch.isclose):\n            return True\n"
                            "        return func(*args, **(kwargs or {}))\n_M().__enter__()", None, None),
    "torch_library_kernels": ("import torch\ntry:\n    _lib = torch.library.Library('aten', 'IMPL')\n"
                              "    _lib.impl('allclose', lambda *a, **k: True, 'CPU')\n"
                              "    _lib.impl('eq.Tensor', lambda a, b: torch.ones(a.shape, dtype=torch.bool), 'CPU')\n"
                              "except Exception:\n    pass", None, None),
    "tensor_with_instance_attributes": ("import torch", "def double(x):\n    t = torch.as_tensor(x) * 3\n"
                                        "    t.__eq__ = lambda o: True\n    t.numpy = lambda: x * 2\n    return t\n",
                                        None),
    "thread_swaps_between_cells": ("import threading, time, numpy as np, dlt_checks\n"
                                   "def _swap():\n    while True:\n        np.allclose = lambda *a, **k: True\n"
                                   "        dlt_checks.assert_close = lambda *a, **k: None\n        time.sleep(0.001)\n"
                                   "threading.Thread(target=_swap, daemon=True).start()", None, None),
    "meta_path_stub_finder": ("import sys, types, importlib.abc, importlib.machinery\n"
                              "class _F(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
                              "    def find_spec(self, name, path, target=None):\n"
                              "        return importlib.machinery.ModuleSpec(name, self)\n"
                              "    def create_module(self, spec):\n        return types.ModuleType(spec.name)\n"
                              "    def exec_module(self, m):\n        m.__getattr__ = lambda n: (lambda *a, **k: True)\n"
                              "sys.meta_path.insert(0, _F())", None, None),
    "object_that_runs_code_when_unpickled": ("class _Evil:\n    def __reduce__(self):\n"
                                             "        return (exec, ('import os; os._exit(0)',))",
                                             "def double(x):\n    return _Evil()\n",
                                             "def mean_square(x):\n    return [_Evil()]\n"),
    "huge_frame_announced": (FORGE, FORGE + "def double(x):\n    _spray(struct.pack('>Q', 2**62))\n    return x * 3\n",
                             None),
    "half_frame_then_ignore_timer": (FORGE, FORGE + "import signal\ndef double(x):\n"
                                     "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                     "    _spray(struct.pack('>Q', 1000) + b'd')\n    while True:\n        pass\n",
                                     RIGHT_MEAN_SQUARE),
    "secrets_in_error_messages": ("import os", "def double(x):\n    raise ValueError(repr(dict(os.environ)) + "
                                  "open('/proc/self/environ').read())\n", None),
    "secrets_of_the_parent": ("import os", "def double(x):\n    raise ValueError(open(f'/proc/{os.getppid()}/environ')"
                              ".read())\n", None),
}


def _submission(stub, cell: str | None, double: str | None, mean_square: str | None):
    nb = copy.deepcopy(stub)
    for c in nb.cells:
        gid = notebook.nb_meta(c).get("grade_id")
        if gid == "ex1_double":
            c.source = double or WRONG_DOUBLE
        elif gid == "ex2_mean_square":
            c.source = mean_square or WRONG_MEAN_SQUARE
    if cell:
        setup = next(i for i, c in enumerate(nb.cells) if notebook.nb_meta(c).get("grade_id") == "setup")
        extra = nbformat.v4.new_code_cell(cell)
        extra["id"] = "attack"
        nb.cells.insert(setup + 1, extra)
    return nb


RUNNER = textwrap.dedent('''
    import sys
    from pathlib import Path
    from coursekit import batch, manifest, reports
    from coursekit.assignment import Assignment
    from coursekit.settings import Settings
    ps = manifest.load(Path(sys.argv[1]))[0]
    a = Assignment.of(ps)
    settings = Settings(cell_timeout=4.0, grace=2.0, memory_gb=2, jobs=2, out=Path(sys.argv[3]), db=sys.argv[4])
    graded = batch.grade_batch(a, Path(sys.argv[2]), settings, progress=True)
    print(reports.summary_table(graded, a))
    for g in graded:
        print(g.student_id, g.total, g.flags, g.messages)
''')


@pytest.fixture(scope="module")
def attacked(toy_course, tmp_path_factory):
    """Every attack and its honest twin graded in one batch, in a grader whose environment and
    gradebook URL carry a secret."""
    work = tmp_path_factory.mktemp("integrity")
    subs, out = work / "subs", work / "out"
    subs.mkdir()
    stub = notebook.read(toy_course.release_notebook)
    nbformat.write(_submission(stub, None, None, None), str(subs / "twin.ipynb"))
    nbformat.write(_submission(stub, None, None, RIGHT_MEAN_SQUARE), str(subs / "twin_right_ex2.ipynb"))
    for name, (cell, double, mean_square) in ATTACKS.items():
        nbformat.write(_submission(stub, cell, double, mean_square), str(subs / f"{name}.ipynb"))
    db_dir = work / SECRET
    db_dir.mkdir()
    env = {**os.environ, "DLT_TA_PASSWORD": SECRET, "PGPASSWORD": SECRET, "PYTHONPATH": str(Path.cwd())}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(toy_course.root / "course.toml"), str(subs), str(out),
                           f"sqlite:///{db_dir / 'gradebook.db'}"], capture_output=True, text=True, env=env,
                          timeout=900)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["student_id"]: r for r in csv.DictReader((out / f"grades_{toy_course.id}.csv").open())}
    return {"rows": rows, "console": proc.stdout + proc.stderr, "out": out, "seconds": seconds, "ps": toy_course}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_no_more_than_its_honest_twin(attacked, name):
    rows = attacked["rows"]
    twin = "twin_right_ex2" if ATTACKS[name][2] == RIGHT_MEAN_SQUARE else "twin"
    assert float(rows[twin]["total"]) == (4.0 if twin == "twin_right_ex2" else 0.0)
    assert float(rows[name]["total"]) <= float(rows[twin]["total"]), (name, rows[name])


def test_a_stalled_half_written_channel_does_not_hang_the_batch(attacked):
    row = attacked["rows"]["half_frame_then_ignore_timer"]
    assert row["ex2_mean_square_values"] == "4", row  # the rest of the submission was still graded
    assert attacked["seconds"] < 600


def test_no_secret_reaches_any_report(attacked):
    texts = [attacked["console"], (attacked["out"] / f"grades_{attacked['ps'].id}.csv").read_text()]
    texts += [p.read_text() for p in (attacked["out"] / "feedback").rglob("*.html")]
    assert len(texts) > len(ATTACKS)
    for text in texts:
        assert SECRET not in text
    # the attempt on the parent's environment is refused and flagged
    assert "suspicious" in attacked["rows"]["secrets_of_the_parent"]["reason"]


ORPHAN_RUNNER = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])  # a marker: the fork server's command line carries sys.path
    from coursekit import notebook, sandbox
    plan = [notebook.Cell(0, "setup", "import numpy as np"),
            notebook.Cell(1, "solution", "import signal, os\\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\\n"
                                         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwhile True:\\n    pass")]
    print("grading", flush=True)
    sandbox.run_cells(plan, limits=sandbox.Limits(cell_timeout=600, grace=5))
''')


def _processes_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_no_grading_process_outlives_the_grader(tmp_path):
    marker = tmp_path / "orphan-marker"
    marker.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_RUNNER, str(marker)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path.cwd())}, start_new_session=True)
    assert proc.stdout.readline().strip() == b"grading"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_processes_with(str(marker))) < 3:  # fork server, trusted, child
        time.sleep(0.5)
    assert len(_processes_with(str(marker))) >= 3, "the grading processes did not start"
    time.sleep(2)
    os.kill(proc.pid, signal.SIGKILL)  # the grader dies without cleaning up
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _processes_with(str(marker)):
        time.sleep(0.5)
    left = _processes_with(str(marker))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} grading processes outlived the grader"
