"""The comparison helper: type, then shape, then values; messages name the worst entry."""

import numpy as np
import pytest
import torch

from coursekit.checks import CheckError, assert_close, assert_dtype, assert_less, assert_shape, assert_true, to_numpy


def test_close_values_pass_within_dtype_tolerance():
    assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12]))
    assert_close(torch.tensor([1.0, 2.0], dtype=torch.float32), np.array([1.0, 2.0 + 1e-6]))


def test_float32_result_gets_float32_tolerance_but_not_more():
    assert_close(torch.tensor([1.0 + 5e-6]), np.array([1.0]))
    with pytest.raises(CheckError):
        assert_close(torch.tensor([1.01]), np.array([1.0]))


def test_message_names_worst_entry_and_errors():
    with pytest.raises(CheckError) as e:
        assert_close(np.array([[1.0, 2.0], [3.0, 4.5]]), np.array([[1.0, 2.0], [3.0, 4.0]]), name="W")
    msg = str(e.value)
    assert "W is off at index (1, 1)" in msg and "abs error 0.5" in msg and "rel error 0.125" in msg


def test_shape_mismatch_is_reported_before_values():
    with pytest.raises(CheckError, match=r"wrong shape for dW: yours \(3, 4\), expected \(4, 3\)"):
        assert_close(np.zeros((3, 4)), np.zeros((4, 3)), name="dW")


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __array__(self, dtype=None, copy=None):
        return np.zeros(3)


class FakeTensor(torch.Tensor):
    pass


@pytest.mark.parametrize("cheat", [AlwaysEqual(), np.array([AlwaysEqual()] * 3, dtype=object)])
def test_objects_that_pretend_are_rejected(cheat):
    with pytest.raises(CheckError):
        assert_close(cheat, np.zeros(3))


def test_tensor_subclass_is_rejected_but_parameter_accepted():
    with pytest.raises(CheckError):
        to_numpy(torch.zeros(3).as_subclass(FakeTensor))
    assert_close(torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)), np.zeros(3))


def test_nan_mismatch_and_matching_nans():
    with pytest.raises(CheckError, match="NaN mismatch"):
        assert_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert_close(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]))


def test_shape_dtype_true_less():
    assert_shape(np.zeros((2, 3)), (2, None))
    with pytest.raises(CheckError):
        assert_shape(np.zeros((2, 3)), (3, 2))
    assert_dtype(torch.zeros(2, dtype=torch.float64), torch.float64)
    with pytest.raises(CheckError):
        assert_dtype(torch.zeros(2, dtype=torch.float32), torch.float64)
    with pytest.raises(CheckError, match="went wrong"):
        assert_true(False, "went wrong")
    with pytest.raises(CheckError):
        assert_true(AlwaysEqual(), "objects are not conditions")
    assert_less(0.5, 1.0)
    with pytest.raises(CheckError):
        assert_less(2.0, 1.0)


def test_students_can_check_a_notebook_before_submitting(tmp_path):
    import json

    from coursekit.checks import check_notebook

    nb = {"cells": [
        {"cell_type": "code", "source": "def f(x):\n    raise NotImplementedError()",
         "metadata": {"nbgrader": {"solution": True, "grade_id": "ex1_f"}}},
        {"cell_type": "code", "source": "def g(x:\n", "metadata": {}},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "ps.ipynb"
    path.write_text(json.dumps(nb))
    problems = check_notebook(str(path))
    assert any("ex1_f: not implemented" in p for p in problems) and any("syntax error" in p for p in problems)
    nb["cells"] = nb["cells"][:1]
    nb["cells"][0]["source"] = "def f(x):\n    return x"
    path.write_text(json.dumps(nb))
    assert check_notebook(str(path)) == []
    path.write_text("import numpy")
    assert "not a notebook" in check_notebook(str(path))[0]


@pytest.mark.parametrize("ps_id", ["ps02"])
def test_pre_submit_check_reports_edited_and_deleted_locked_cells(ps_id, tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    from coursekit import manifest

    ps = manifest.get(ps_id)
    for name in (f"{ps_id}.ipynb", f"{ps_id}.locked.json", "dlt_checks.py"):
        shutil.copyfile(ps.release_dir / name, tmp_path / name)

    def check(*args):
        proc = subprocess.run([sys.executable, "dlt_checks.py", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        return proc.returncode, proc.stdout

    code, out = check(f"{ps_id}.ipynb")
    assert code == 1 and "not implemented yet" in out and "locked cell" not in out, out
    nb = json.loads((tmp_path / f"{ps_id}.ipynb").read_text())
    tests = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")
             and not c["metadata"]["nbgrader"].get("solution")]
    edited, deleted = tests[0]["metadata"]["nbgrader"]["grade_id"], tests[1]["metadata"]["nbgrader"]["grade_id"]
    tests[0]["source"] = "pass  # the student gutted this test"
    nb["cells"].remove(tests[1])
    (tmp_path / f"{ps_id}.ipynb").write_text(json.dumps(nb))
    shutil.copyfile(tmp_path / f"{ps_id}.ipynb", tmp_path / "my copy.ipynb")
    for name in (f"{ps_id}.ipynb", "my copy.ipynb"):  # also when the student renamed the notebook
        code, out = check(name)
        assert code == 1 and f"{edited}: this locked cell was edited" in out, out
        assert f"{deleted}: this locked cell was deleted" in out, out
    code, out = check("--help")
    assert code == 0 and "usage" in out
    code, out = check("no-such-file.ipynb")
    assert code == 2 and "no such file" in out


def test_figure_skips_an_unfinished_exercise_with_one_line(capsys):
    from coursekit.checks import figure

    def relu_interpolant(knots, values):
        raise NotImplementedError()

    done = []
    with figure("ex1", "ex4"):
        done.append("before")
        relu_interpolant(None, None)
        done.append("after")  # never reached
    out = capsys.readouterr().out
    assert done == ["before"]
    assert out == "Figure skipped: finish exercises 1 and 4 first (relu_interpolant is not implemented yet)\n"
    with figure("ex2"):
        done.append("finished")
    assert done[-1] == "finished" and capsys.readouterr().out == ""
    with pytest.raises(ZeroDivisionError):  # any other error is the figure's own and propagates
        with figure("ex2"):
            1 / 0
