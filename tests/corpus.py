"""A corpus of broken and dishonest submissions, generated from a problem set's release.

Each entry is ``name -> Case(data, kind, honest_points)``: the bytes of the submitted
file, the kind of trouble, and how many points it may honestly earn (``None`` when that
depends only on the rest being graded; the tests then compare with the same notebook
graded without the trouble).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import nbformat

from coursekit import notebook
from coursekit.validate import instructor_submission


@dataclass
class Case:
    data: bytes
    kind: str  # not-a-notebook | tampered | runaway | cheating
    max_points: float | None  # an upper bound on what it may earn; None: as its honest twin
    flagged: bool = True  # must the grader report it?
    twin: str | None = None  # name of the honest version it must score like


def _dump(nb) -> bytes:
    return nbformat.writes(nb).encode()


def _first_solution(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if notebook.nb_meta(c).get("solution"))


def _with_cell(nb, source: str, at: int | None = None):
    nb = copy.deepcopy(nb)
    pos = _first_solution(nb) if at is None else at
    cell = nbformat.v4.new_code_cell(source)
    cell["id"] = f"corpus{len(nb.cells)}{pos}"
    nb.cells.insert(pos + 1, cell)
    return nb


def _in_first_solution(nb, extra: str):
    nb = copy.deepcopy(nb)
    i = _first_solution(nb)
    nb.cells[i].source = nb.cells[i].source + "\n" + extra
    return nb


def build(ps, paths: dict) -> dict[str, Case]:
    """The corpus for problem set ``ps``. ``paths`` names files a cheater goes after:
    keys ``gradebook``, ``course_file``, ``other_student``, ``autograder_zip``."""
    stub = notebook.read(ps.release_notebook)
    good = instructor_submission(ps, stub)
    tests_total = sum(c.points for c in notebook.test_cells(notebook.read(ps.source_notebook)))
    cases: dict[str, Case] = {}

    # not a notebook
    cases["invalid_json"] = Case(b'{"cells": [', "not-a-notebook", 0)
    cases["empty_file"] = Case(b"", "not-a-notebook", 0)
    cases["python_renamed"] = Case(b"import numpy as np\n\ndef f(x):\n    return x\n", "not-a-notebook", 0)
    cases["non_utf8"] = Case(b"\xff\xfe\x00\x81garbage\x9f" * 100, "not-a-notebook", 0)
    cases["huge_file"] = Case(b"", "not-a-notebook", 0)  # written sparse, 200 MB, by the test
    old = nbformat.convert(copy.deepcopy(good), 3)
    cases["nbformat_v3_no_ids"] = Case(json.dumps(old).encode(), "tampered", None, flagged=False, twin="good")
    v44 = copy.deepcopy(good)
    v44.nbformat_minor = 4
    for c in v44.cells:
        c.pop("id", None)
    cases["nbformat_44_no_ids"] = Case(json.dumps(v44).encode(), "tampered", None, flagged=False, twin="good")

    # structure tampered: test cells are the instructor's whatever the submission holds
    def tests_of(nb):
        return [c for c in nb.cells if notebook.classify(c) == "test"]

    nb = copy.deepcopy(stub)
    for c in tests_of(nb):
        c.source = "assert True"
    cases["tests_edited_assert_true"] = Case(_dump(nb), "tampered", 0, flagged=False)
    nb = copy.deepcopy(good)
    nb.cells = [c for c in nb.cells if notebook.classify(c) != "test"]
    cases["tests_deleted"] = Case(_dump(nb), "tampered", None, flagged=False, twin="good")
    nb = copy.deepcopy(stub)
    nb.cells = [c for c in nb.cells if notebook.classify(c) != "test"]
    cases["tests_deleted_stub"] = Case(_dump(nb), "tampered", 0, flagged=False)
    nb = copy.deepcopy(good)
    nb.cells = list(reversed(nb.cells))
    cases["cells_reordered"] = Case(_dump(nb), "tampered", None, flagged=False, twin="good")
    nb = copy.deepcopy(good)
    for c in nb.cells:
        c.metadata.pop("nbgrader", None)
    cases["metadata_stripped"] = Case(_dump(nb), "tampered", None, flagged=False, twin="good")
    nb = copy.deepcopy(good)
    for c in nb.cells:
        meta = notebook.nb_meta(c)
        if meta.get("solution"):
            c.metadata["nbgrader"]["grade_id"] = meta["grade_id"] + "_renamed"
    cases["grade_id_renamed"] = Case(_dump(nb), "tampered", None, flagged=False, twin="good")
    nb = copy.deepcopy(good)
    nb.cells = [c for c in nb.cells if not notebook.nb_meta(c).get("solution")]
    cases["solutions_deleted"] = Case(_dump(nb), "tampered", 0, flagged=False)

    # runaway code, in the first solution cell of a correct notebook
    runaway = {
        "infinite_loop": "while True:\n    pass",
        "sleep_hours": "import time\ntime.sleep(4 * 3600)",
        "memory_bomb": "blob = bytearray(64 * 2**30)",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "sys_exit": "import sys\nsys.exit(0)",
        "os_exit": "import os\nos._exit(1)",
        "kill_own_kernel": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "print_100mb": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)",
    }
    for name, code in runaway.items():
        cases[name] = Case(_dump(_in_first_solution(good, code)), "runaway", tests_total,
                           flagged=name not in ("sys_exit", "print_100mb", "fork_bomb", "memory_bomb"))

    # cheating, on top of the stub: nothing here may earn a point
    cheats = {
        "patch_np_allclose": "import numpy as np\nnp.allclose = lambda *a, **k: True\nnp.isclose = lambda a, b, **k: np.ones(np.shape(b), bool)",
        "patch_torch_allclose": "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.Tensor.__eq__ = lambda *a: True",
        "patch_np_testing": "import numpy.testing as npt\nnpt.assert_allclose = lambda *a, **k: None\nnpt.assert_array_equal = lambda *a, **k: None",
        "patch_helper_module": "import dlt_checks\nfor n in dir(dlt_checks):\n    if n.startswith('assert'):\n        setattr(dlt_checks, n, lambda *a, **k: None)",
        "redefine_helper_names": "assert_close = lambda *a, **k: None\nassert_shape = lambda *a, **k: None\nassert_true = lambda *a, **k: None",
        "patch_builtins": "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.abs = lambda x: 0\nbuiltins.all = lambda x: True",
        "fake_module": "import sys, types\nm = types.ModuleType('dlt_checks')\nfor n in ('assert_close', 'assert_shape', 'assert_true', 'assert_dtype', 'assert_less', 'assert_finite'):\n    setattr(m, n, lambda *a, **k: None)\nsys.modules['dlt_checks'] = m",
        "import_solutions": f"import importlib\nsol = importlib.import_module({ps.module!r})\nglobals().update(vars(sol))",
        "read_instructor_notebook": f"SRC = open({str(ps.source_notebook)!r}).read()",
        "read_autograder_zip": f"Z = open({str(paths['autograder_zip'])!r}, 'rb').read()",
        "read_gradebook": f"import sqlite3\nDB = sqlite3.connect({str(paths['gradebook'])!r}).execute('select * from grade').fetchall()",
        "write_gradebook": f"open({str(paths['gradebook'])!r}, 'ab').write(b'garbage')",
        "write_other_student": f"open({str(paths['other_student'])!r}, 'w').write('{{}}')",
        "write_course_file": f"open({str(paths['course_file'])!r}, 'a').write('# pwned')",
        "torch_save_over_course_file": f"import torch\ntorch.save({{}}, {str(paths['course_file'])!r})",
    }
    for name, code in cheats.items():
        cases[name] = Case(_dump(_with_cell(stub, code)), "cheating", 0)

    # every student function returns an object that equals anything
    yes = ("class _Yes:\n    def __eq__(self, other):\n        return True\n    __ne__ = lambda s, o: False\n"
           "    def __array__(self, *a, **k):\n        import numpy\n        return numpy.zeros(0)\n"
           "    __bool__ = lambda s: True\n    __float__ = lambda s: 0.0\n")
    nb = copy.deepcopy(stub)
    for c in nb.cells:
        if notebook.nb_meta(c).get("solution"):
            names = sorted(assemble_names(notebook.instructor_source(good_source(good, c))))
            c.source = yes + "".join(f"def {n}(*a, **k):\n    return _Yes()\n" for n in names)
    cases["always_equal_objects"] = Case(_dump(nb), "cheating", 0)
    return cases


def good_source(good, stub_cell) -> str:
    gid = notebook.nb_meta(stub_cell).get("grade_id")
    return next(c.source for c in good.cells if notebook.nb_meta(c).get("grade_id") == gid)


def assemble_names(source: str) -> set[str]:
    from coursekit.assemble import _defined_names

    return _defined_names(source)
