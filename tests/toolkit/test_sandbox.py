"""The sandboxed cell runner on its own: limits, audit hook, integrity checks, no false alarms."""

import sys

import pytest

from coursekit.notebook import Cell
from coursekit.sandbox import Limits, run_cells

pytestmark = pytest.mark.slow
LIMITS = Limits(cell_timeout=3, grace=2, memory_bytes=2 * 2**30)
SETUP = Cell(0, "setup", "import numpy as np\nfrom dlt_checks import assert_close\ndef helper(x):\n    return x")


def run(*cells):
    return run_cells([SETUP, *cells], limits=LIMITS)


def test_student_may_redefine_own_function_after_a_later_read_only_cell():
    r = run(Cell(1, "solution", "def f(x):\n    return 0 * x"),
            Cell(2, "setup", "DATA = np.ones(3)"),
            Cell(3, "solution", "def f(x):\n    return 2 * x"),
            Cell(4, "test", "assert_close(f(DATA), 2 * DATA)", "t", 1))
    assert r[-1].ok and not r[-1].tampered, r[-1]


def test_redefining_a_setup_helper_is_undone_and_flagged():
    r = run(Cell(1, "solution", "assert_close = lambda *a, **k: None"),
            Cell(2, "test", "assert_close(np.ones(2), np.zeros(2))", "t", 1))
    assert not r[-1].ok and r[-1].tampered


def test_peeking_at_the_tests_namespace_is_refused():
    r = run(Cell(1, "solution", "import sys\ndef f(x):\n    return sys._getframe(1).f_globals['expected']"),
            Cell(2, "test", "expected = np.ones(3) * 7\nassert_close(f(np.ones(3)), expected)", "t", 1),
            Cell(3, "solution", "def g(x):\n    return globals().get('expected', x)"),
            Cell(4, "test", "expected = np.ones(3) * 7\nassert_close(g(np.ones(3)), expected)", "t2", 1))
    assert not r[2].ok and any(sev == "forbidden" for sev, _ in r[2].violations)
    assert not r[4].ok  # a test's own variables are not the student's globals


def test_libraries_that_inspect_frames_or_patch_their_own_classes_are_not_flagged():
    r = run(Cell(1, "solution", "def k(x):\n    rng = np.random.default_rng(0)\n    import torch\n"
                                "    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)\n"
                                "    import warnings\n    warnings.warn('harmless')\n    return 7 * x"),
            Cell(2, "test", "assert_close(k(np.ones(3)), 7 * np.ones(3))", "t", 1))
    assert r[-1].ok and not r[-1].violations and not r[-1].tampered, r[-1]


def test_a_dead_child_is_replaced_and_later_cells_still_run():
    r = run(Cell(1, "solution", "def f(x):\n    return x"),
            Cell(2, "solution", "import os\nos._exit(3)"),
            Cell(3, "test", "assert_close(f(np.ones(2)), np.ones(2))", "t", 1))
    assert r[2].status == "died" and r[3].ok


def test_other_processes_and_raw_devices_are_out_of_reach():
    r = run(Cell(1, "solution", "import os\nopen(f'/proc/{os.getppid()}/environ').read()"),
            Cell(2, "solution", "open('/dev/mem', 'rb')"),
            Cell(3, "solution", "import os\nopen(f'/proc/{os.getpid()}/status').read()\nopen('/proc/cpuinfo').read()"))
    assert r[1].status == "blocked" and any(sev == "forbidden" for sev, _ in r[1].violations)
    assert r[2].status == "blocked" and any(sev == "forbidden" for sev, _ in r[2].violations)
    assert r[3].ok, r[3]


def test_forbid_applies_where_the_students_code_runs():
    r = run(Cell(1, "solution", "import torch\ndef g(x):\n    x = x.clone().requires_grad_()\n"
                                "    return torch.autograd.grad((x ** 2).sum(), x)[0]"),
            Cell(2, "test", "import torch\nfrom dlt_checks import forbid\nx = torch.ones(2)\n"
                            "with forbid(['torch.autograd.grad'], 'compute it by hand'):\n"
                            "    try:\n        g(x)\n    except AssertionError as e:\n        assert 'by hand' in str(e)\n"
                            "    else:\n        raise AssertionError('forbid did not reach the student code')\n"
                            "assert_close(g(x), 2 * x)", "t", 1))
    assert r[-1].ok, r[-1]


def test_in_place_changes_to_arguments_are_written_back():
    r = run(Cell(1, "solution", "import torch\ndef fill(a, m):\n    a[:] = 5\n    with torch.no_grad():\n"
                                "        m.weight.fill_(2.0)\n    return None"),
            Cell(2, "test", "import torch\na = np.zeros(3)\nm = torch.nn.Linear(2, 1)\nw = m.weight\nfill(a, m)\n"
                            "assert_close(a, np.full(3, 5.0))\nassert m.weight is w\n"
                            "assert_close(m.weight.detach(), torch.full((1, 2), 2.0))", "t", 1))
    assert r[-1].ok, r[-1]


REF_SETUP = Cell(1, "setup", "import torch\nfrom dlt_checks import reference\n"
                             "def fresh(n):\n    return np.random.default_rng().random(n)\n"
                             "SCALE = 2.0\n"
                             "def scaled(n):\n    return SCALE * fresh(n)")


def _reported(*cells) -> list[str]:
    """Each test cell fails with the value it computed: equal messages = the same value."""
    return [r.error for r in run(REF_SETUP, *cells) if r.kind == "test"]


def test_reference_values_are_computed_once_and_reused_for_the_next_submission():
    from coursekit import sandbox

    sandbox.REFERENCES.clear()
    cells = (Cell(2, "solution", "def g(n):\n    return np.random.default_rng().random(n)"),
             Cell(3, "test", "v = reference(fresh, 3)\nassert False, repr(v)", "plain", 1),
             Cell(4, "test", "v = reference(scaled, 3)\nassert False, repr(v)", "via_globals", 1),
             Cell(5, "test", "v = reference(lambda n: g(n), 3)\nassert False, repr(v)", "calls_submission", 1),
             Cell(6, "test", "k = 3\nv = reference(lambda: fresh(k))\nassert False, repr(v)", "reads_test_data", 1),
             Cell(7, "test", "def outer(m):\n    return reference(lambda: fresh(m))\n"
                             "v = outer(3)\nassert False, repr(v)", "closure", 1),
             Cell(8, "test", "def from_tensor(t, g):\n    return fresh(int(t.sum())) + torch.rand(1, generator=g).item()\n"
                             "v = reference(from_tensor, torch.ones(3), torch.Generator().manual_seed(1))\n"
                             "assert False, repr(v)", "tensor_and_generator_inputs", 1))
    first, second = _reported(*cells), _reported(*cells)
    assert all(m.startswith("AssertionError: array(") for m in first + second), first
    same = [a == b for a, b in zip(first, second)]
    # cached: plain data and code (also through a global it reads); not cached: a computation
    # that calls into the submission, or that captured a value from an enclosing call
    assert same == [True, True, False, True, False, True], (first, second)
    assert 3 <= len(sandbox.REFERENCES) <= 4


def test_a_reference_value_may_take_a_course_module_whose_methods_call_super():
    """A read-only cell's torch.nn.Module subclass (its __init__ calls super(): a closure over the
    class) keys by its code and parameters; another class, or other parameters, give a new value."""
    from coursekit import sandbox

    sandbox.forget_references()
    field = ("class Field(torch.nn.Module):\n    def __init__(self, s):\n        super().__init__()\n"
             "        self.w = torch.nn.Parameter(torch.full((2,), float(s)))\n"
             "def noisy(m):\n    return fresh(2) + m.w.detach().numpy()\n")
    cells = (Cell(2, "setup", field),
             Cell(3, "test", "v = reference(noisy, Field(1))\nassert False, repr(v)", "a", 1),
             Cell(4, "test", "v = reference(noisy, Field(2))\nassert False, repr(v)", "b", 1))
    first, second = _reported(*cells), _reported(*cells)
    assert first == second and first[0] != first[1], (first, second)  # cached, per parameters
    other = Cell(2, "setup", field.replace("float(s)", "float(s) + 0"))
    assert [r.error for r in run(REF_SETUP, other, *cells[1:]) if r.kind == "test"] != first  # other code


def test_a_reference_value_changes_when_its_inputs_or_code_change():
    base = (Cell(3, "test", "v = reference(fresh, 3)\nassert False, repr(v)", "a", 1),)
    again = _reported(*base)
    assert _reported(*base) == again
    assert _reported(Cell(3, "test", "v = reference(fresh, 4)\nassert False, repr(v)", "a", 1)) != again
    other = Cell(1, "setup", REF_SETUP.source.replace("random(n)", "random(n) + 0"))
    assert [r.error for r in run(other, *base) if r.kind == "test"] != again


def test_a_read_only_helper_may_call_the_students_function():
    r = run(Cell(1, "setup", "def twice_of_student(x):\n    return 2 * student_fn(x)"),
            Cell(2, "solution", "def student_fn(x):\n    return x + 1"),
            Cell(3, "test", "assert_close(twice_of_student(np.ones(2)), 4 * np.ones(2))", "t", 1),
            Cell(4, "test", "assert_close(twice_of_student(np.zeros(2)), 2 * np.zeros(2) + 3)", "t2", 1))
    assert r[3].ok, r[3]
    assert not r[4].ok and "yours 2, expected 3" in r[4].error  # it really called the student's code


def test_tensors_sent_by_value_arrive_as_torch_would_send_them():
    """A call carrying a course model goes by value; its tensors (numpy-backed on the fast path,
    torch's own pickling for views, subclasses and bfloat16) keep type, dtype, shape, values,
    requires_grad and contiguity."""
    describe = ("import torch\ndef describe(x):\n    if isinstance(x, torch.nn.Module):\n"
                "        return [describe(p) for p in x.parameters()] + [type(x).__name__]\n"
                "    return [type(x).__name__, str(x.dtype), tuple(x.shape), x.requires_grad, x.is_leaf,\n"
                "            x.is_contiguous(),\n"
                "            x.detach().double().tolist() if x.dtype != torch.complex128 else str(x.tolist())]\n"
                "def describe_all(*xs):\n    return [describe(x) for x in xs]")
    r = run(Cell(1, "solution", describe),
            Cell(2, "test", describe.replace("def describe", "def mine") .replace("describe(", "mine(") + "\n"
                 "g = torch.Generator().manual_seed(0)\nbase = torch.randn(3, 4, generator=g, dtype=torch.float64)\n"
                 "xs = [torch.nn.Linear(3, 2).double(), torch.nn.Parameter(base.clone()), base.clone().requires_grad_(True),\n"
                 "      base.T, base[1], base.to(torch.bfloat16), torch.arange(5), torch.tensor(True), torch.zeros(0, 3),\n"
                 "      torch.tensor(2.5), base.to(torch.complex128), base.float(), torch.nn.Parameter(base[0].clone(), False)]\n"
                 "got = describe_all(*xs)\nwant = mine_all(*xs)\nassert got == want, (got, want)\n", "t", 1))
    assert r[-1].ok, r[-1]


def test_zero_dimensional_arrays_keep_their_shape_across_the_boundary():
    r = run(Cell(1, "solution", "def stats(x):\n    return {'mean': np.array(x.mean()), 'all': [np.array(1.0)]}"),
            Cell(2, "test", "s = stats(np.ones(3))\nassert s['mean'].shape == () and s['all'][0].shape == (), s", "t", 1))
    assert r[2].ok, r[2]


def test_a_read_only_cells_reference_value_also_reaches_the_students_process():
    """A value a read-only cell computes with reference() (public course code on public data) is
    computed on the trusted side and handed to the child with the cell, so neither side repeats
    it; a test's own value never crosses."""
    from coursekit import sandbox

    sandbox.REFERENCES.clear()
    sandbox.SETUP_REFERENCES.clear()
    cells = (Cell(1, "setup", "import os\nfrom dlt_checks import reference\n"
                              "def where():\n    return os.getpid()\n"
                              "V = reference(where)"),
             Cell(2, "solution", "def child_v():\n    return V\n"),
             Cell(3, "test", "assert child_v() == V, 'the two sides computed V each'", "same_v", 1),
             Cell(4, "test", "from dlt_checks import reference\ndef hidden():\n    return -os.getpid()\n"
                             "W = reference(hidden)\nassert W < 0, 'a test value'", "test_value", 1))
    first, second = ({r.grade_id: r for r in run(*cells) if r.kind == "test"} for _ in range(2))
    for results in (first, second):  # the trusted side's value, also in the child, from the first submission on
        assert results["same_v"].ok and results["test_value"].ok, results
    assert len(sandbox.REFERENCES) == 2 and len(sandbox.SETUP_REFERENCES) == 1  # only the read-only cell's


def test_grading_processes_running_at_once_compute_a_reference_value_once():
    """Two submissions graded side by side: the second waits for the value the first is
    computing instead of computing it too (its result is the first one's)."""
    import threading

    from coursekit import sandbox

    sandbox.forget_references()
    cells = (Cell(2, "test", "import time, os\ndef slow_pid():\n    time.sleep(1.0)\n    return os.getpid()\n"
                             "v = reference(slow_pid)\nassert False, repr(v)", "slow", 1),)
    out = []
    threads = [threading.Thread(target=lambda: out.append(_reported(*cells))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and out[0] == out[1], out  # one pid: one computation
    assert len(sandbox.REFERENCES) == 1


def test_pairs_started_ahead_grade_as_pairs_started_on_demand_and_leave_nothing_behind(monkeypatch):
    """In a batch (`sandbox.ahead`), a submission's two processes are started before it needs
    them and stopped after, in the background; cells are sent one ahead. The results are those
    of pairs started on demand, a dead child is still replaced, and on leaving no spare process
    or folder remains."""
    import os
    import threading

    from coursekit import sandbox

    folders = []
    made = sandbox._folders
    monkeypatch.setattr(sandbox, "_folders", lambda files: folders.append(made(files)) or folders[-1])
    sandbox.forget_references()
    cells = (Cell(2, "solution", "def f(x):\n    return x + 1"),
             Cell(3, "test", "v = reference(fresh, 3)\nassert False, repr(v)", "ref", 1),
             Cell(4, "setup", "import os\nPID = os.getpid()"),
             Cell(5, "solution", "import os\ndef g():\n    return os.getpid() == PID"),
             Cell(6, "test", "assert_close(f(np.ones(2)), 2 * np.ones(2))\nassert g()", "calls", 1),
             Cell(7, "solution", "import os\nos._exit(3)"),
             Cell(8, "test", "assert_close(f(np.ones(2)), 2 * np.ones(2))", "after_death", 1))
    plain = [(r.kind, r.status, r.error) for r in run(REF_SETUP, *cells)]
    with sandbox.ahead(2):
        out = []
        threads = [threading.Thread(target=lambda: out.extend(
            [(r.kind, r.status, r.error) for r in run(REF_SETUP, *cells)] for _ in range(3))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spares = [fut.result()[0] for _, fut in sandbox.AHEAD.spares]
        assert spares and all(p.is_alive() for pair in spares for p in pair.procs)
    assert len(out) == 6 and all(r == plain for r in out), (plain, out)
    assert [s for _, s, _ in plain[2:]] == ["passed", "failed", "passed", "passed", "passed", "died", "passed"]
    assert not any(p.is_alive() for pair in spares for p in pair.procs)
    assert len(folders) >= 8 and not any(os.path.exists(d) for pair in folders for d in pair)
    assert sandbox.AHEAD.depth == 0 and sandbox.AHEAD.take(LIMITS) is None  # off again


def test_the_submodule_index_finds_what_cloudpickle_finds():
    """Functions a test sends are pickled by value; the trusted side's index of sys.modules by
    package gives cloudpickle's own search result, also after new modules are imported."""
    import types

    import numpy as np
    import scipy.linalg  # noqa: F401
    import torch
    import torch.nn.functional as F  # noqa: F401
    from cloudpickle import cloudpickle as impl

    from coursekit import _trusted

    original = impl._find_imported_submodules
    if original is _trusted._imported_submodules:
        pytest.skip("already replaced in this process")

    def f(x):
        return torch.nn.functional.relu(np.linalg.norm(x)) + torch.linalg.norm(x) + scipy.linalg.norm(x)

    scipy = __import__("scipy")
    deps = [torch, np, scipy, torch.nn, types]
    assert _trusted._imported_submodules(f.__code__, deps) == original(f.__code__, deps) != []
    import scipy.sparse.linalg  # noqa: F401 -- a newly loaded submodule is found too

    def g(x):
        return scipy.sparse.linalg.norm(x)

    assert _trusted._imported_submodules(g.__code__, [scipy]) == original(g.__code__, [scipy]) != []


def test_the_submodule_index_follows_modules_added_and_removed(tmp_path, monkeypatch):
    """The index looks only at the names added since it last looked; a module removed from
    sys.modules (and imported again) makes it look at all of them again."""
    from cloudpickle import cloudpickle as impl

    from coursekit import _trusted

    original = impl._find_imported_submodules
    if original is _trusted._imported_submodules:
        pytest.skip("already replaced in this process")
    pkg = tmp_path / "dltpkgx"
    (pkg / "inner").mkdir(parents=True)
    for f in ("__init__.py", "a.py", "b.py", "inner/__init__.py", "inner/c.py"):
        (pkg / f).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    import dltpkgx.a  # noqa: F401

    def f():
        return dltpkgx.a, dltpkgx.b, dltpkgx.inner.c

    dltpkgx = sys.modules["dltpkgx"]
    try:
        found = [m.__name__ for m in _trusted._imported_submodules(f.__code__, [dltpkgx])]
        assert found == [m.__name__ for m in original(f.__code__, [dltpkgx])] == ["dltpkgx.a"]
        import dltpkgx.b  # noqa: F401
        import dltpkgx.inner.c  # noqa: F401

        found = [m.__name__ for m in _trusted._imported_submodules(f.__code__, [dltpkgx])]
        expected = ["dltpkgx.a", "dltpkgx.b", "dltpkgx.inner", "dltpkgx.inner.c"]
        assert found == [m.__name__ for m in original(f.__code__, [dltpkgx])] == expected
        del sys.modules["dltpkgx.b"], sys.modules["dltpkgx.inner.c"]
        assert {m.__name__ for m in _trusted._imported_submodules(f.__code__, [dltpkgx])} == {"dltpkgx.a", "dltpkgx.inner"}
        import dltpkgx.inner.c  # noqa: F401, F811

        found = {m.__name__ for m in _trusted._imported_submodules(f.__code__, [dltpkgx])}
        assert found == {m.__name__ for m in original(f.__code__, [dltpkgx])} == {"dltpkgx.a", "dltpkgx.inner", "dltpkgx.inner.c"}
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "dltpkgx"]:
            del sys.modules[name]


def test_stored_reference_values_are_used_by_a_later_grader_and_stale_stores_are_ignored(tmp_path):
    """`make autograder` stores the tests' reference values; a later grader (here: this process
    after forgetting them) starts from the file instead of recomputing. A store written by other
    libraries or grader code, or a damaged one, is ignored."""
    import pickle

    from coursekit import sandbox

    cells = (Cell(3, "test", "v = reference(fresh, 3)\nassert False, repr(v)", "a", 1),)
    sandbox.forget_references()
    with sandbox.BOARD.tracking() as used:
        first = _reported(*cells)
    assert len(used) == 1
    store = tmp_path / "references.pkl"
    assert sandbox.save_references(store, used) == 1
    sandbox.forget_references()
    assert _reported(*cells) != first  # recomputed: a fresh random draw
    sandbox.forget_references()
    assert sandbox.load_references(store) == used
    assert _reported(*cells) == first  # the stored value

    data = pickle.loads(store.read_bytes())
    (key,) = data["values"]
    planted = dict(data, values={key: pickle.dumps("planted")})
    store.write_bytes(pickle.dumps(planted))
    sandbox.forget_references()
    sandbox.load_references(store)
    assert _reported(*cells) == ["AssertionError: 'planted'"]  # the grader really reads the file
    for bad in (dict(planted, version="other libraries"), "not a store"):
        store.write_bytes(pickle.dumps(bad))
        sandbox.forget_references()
        assert sandbox.load_references(store) == set()
    store.write_bytes(b"\x80\x05damaged")
    assert sandbox.load_references(store) == set() and sandbox.load_references(tmp_path / "missing") == set()
    assert _reported(*cells) not in (first, ["AssertionError: 'planted'"])


def test_notebook_habits_work_as_in_jupyter():
    """The shell a submission runs in is a real IPython shell (prepared once by the fork server):
    magics, display(), get_ipython(), and pickling a class a cell defines (its namespace is
    __main__). The trusted side's shell is another one."""
    r = run(Cell(1, "solution", "%matplotlib inline\nimport pickle\nclass Box:\n    def __init__(self, v):\n"
                                "        self.v = v\nB = pickle.loads(pickle.dumps(Box(3)))\ndisplay(B.v)\n"
                                "SHELL_ID = id(get_ipython())\ndef box_v():\n    return B.v"),
            Cell(2, "test", "assert box_v() == 3\nassert get_ipython().user_ns is not None", "t", 1),
            Cell(3, "solution", "def same_shell():\n    return id(get_ipython()) == SHELL_ID and "
                                "get_ipython().user_ns is globals()"),
            Cell(4, "test", "assert same_shell()", "t2", 1))
    assert all(x.ok for x in r), r


def test_read_only_cells_compiled_once_by_the_grader_run_as_their_source_would():
    """The grader compiles setup and test cells once (IPython's transforms included); they run on
    both sides as before, and a failing test still reports its own line."""
    from coursekit import sandbox

    setup = Cell(1, "setup", "%matplotlib inline\nK = 3\ndef k():\n    return K")
    one_line = Cell(2, "setup", "%matplotlib inline")
    test = Cell(4, "test", "a = k()\nb = twice()\nassert b == 2 * a == 7, (a, b)", "t", 1)
    assert sandbox.compiled(setup) is not None and sandbox.compiled(test) is not None
    assert sandbox.compiled(one_line) is None and sandbox.compiled(Cell(5, "solution", "x = 1")) is None
    r = run(setup, one_line, Cell(3, "solution", "def twice():\n    return 2 * K"), test)
    assert all(x.ok for x in r[:4]) and not r[4].ok, r
    assert r[4].line == 3 and "(3, 6)" in r[4].error, r[4]


def test_in_submission_runs_a_loop_of_calls_where_the_students_code_runs():
    """`in_submission(fn, ...)`: the test's own function, with the student's function among its
    arguments, runs in the student's process in one exchange; its result, and what it changed
    in place, come back as data. Without the grader it is just the call."""
    from coursekit import checks

    assert checks.in_submission(lambda f, n: [f(i) for i in range(n)], lambda i: i * i, 3) == [0, 1, 4]
    loop = ("def loop(f, xs, gen):\n    out = []\n    for _ in range(200):\n"
            "        out.append(float(f(torch.randn(3, generator=gen, dtype=torch.float64))))\n"
            "    xs[0] = -1.0\n    return out, os.getpid()\n")
    r = run(Cell(1, "setup", "import os\nimport torch\nfrom dlt_checks import in_submission"),
            Cell(2, "solution", "import os\ndef norm2(x):\n    return float((x ** 2).sum())\nPID = os.getpid()"),
            Cell(3, "test", loop + "g = torch.Generator().manual_seed(0)\nxs = np.zeros(2)\n"
                 "out, pid = in_submission(loop, norm2, xs, g)\n"
                 "g2 = torch.Generator().manual_seed(0)\n"
                 "want = [float((torch.randn(3, generator=g2, dtype=torch.float64) ** 2).sum()) for _ in range(200)]\n"
                 "assert out == want and pid == PID != os.getpid(), (pid, os.getpid())\n"
                 "assert xs[0] == -1.0 and torch.equal(g.get_state(), g2.get_state())\n"
                 "in_submission(norm2, 'not a tensor')", "t", 1))
    assert all(x.ok for x in r[:3]) and not r[3].ok, r
    assert r[3].line == 14 and "TypeError" in r[3].error, r[3]


def test_grading_processes_run_the_pools_on_the_threads_they_are_given():
    """One thread per pool (most grading processes): set in the fork server, so neither process
    starts OpenBLAS threads (each spun ~0.1 s of CPU per submission, against the other worker's
    student). With more (JOBS=1 on several cores) torch and BLAS get them."""
    import dataclasses

    work = ("import os, numpy as np, scipy.linalg, torch\na = np.random.rand(300, 300)\nb = a @ a\n"
            "scipy.linalg.lu(a)\nc = torch.rand(300, 300) @ torch.rand(300, 300)\n"
            "pools = (len(os.listdir('/proc/self/task')), torch.get_num_threads())\n")
    one = run(Cell(1, "solution", work + "child_pools = pools"),
              Cell(2, "test", work + "assert child_pools == (1, 1), child_pools\nassert pools == (1, 1), pools", "t", 1))
    assert one[-1].ok, one[-1]
    two = run_cells([SETUP, Cell(1, "solution", work + "child_pools = pools"),
                     Cell(2, "test", work + "assert child_pools[1] == 2 and pools[1] == 2, (child_pools, pools)",
                          "t", 1)], limits=dataclasses.replace(LIMITS, threads=2))
    assert two[-1].ok, two[-1]
