"""`make new PS=psNN TITLE="..."`: the skeleton of a new problem set, valid as it stands.

Writes the instructor notebook (title/papers markdown, setup cell, one example exercise: markdown,
solution cell, one graded test cell with a public and a hidden part, 100 points), the reference
module ``solutions/psNN_<topic>.py``, its unit tests against an independent oracle
(``tests/solutions/test_psNN_<topic>.py``), the mutant tests (``tests/mutants/test_psNN_mutants.py``:
one correct alternative, one plausible bug) and the manifest entry (status "written", placeholder
dates a week after the last set, for the instructor to set). The result passes `make check-source`,
`make release` and `make validate` at once; the author then replaces the example exercise.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import nbformat

from . import manifest
from .manifest import MANIFEST, ManifestError, ProblemSet

ID = re.compile(r"^ps\d{2}$")
TOPIC = re.compile(r"^[a-z][a-z0-9_]*$")
_SMALL_WORDS = {"a", "an", "and", "the", "of", "for", "in", "on", "to", "with", "via", "from", "by", "as"}
POINTS = 100
FUNCTION = "mse_gradient"  # the example exercise's function
SOLUTION_ID, TEST_ID = "ex1_mse_gradient", "ex1_mse_gradient_values"
REFERENCE_LINE = "return X.T @ (X @ w - y) / X.shape[0]"  # the reference body (the mutant test edits it)

SETUP = """\
import matplotlib.pyplot as plt
import numpy as np
import torch
from dlt_checks import assert_close, assert_shape, assert_dtype, assert_true, assert_less, assert_finite

torch.manual_seed(0)
np.random.seed(0)
DT = torch.float64"""

DOCSTRING = '''\
    """Gradient of the squared loss L(w) = ||X w - y||^2 / (2 N) with respect to w.

    X: (N, D) float64, the N samples as rows (must not be modified)
    y: (N,) float64, the targets
    w: (D,) float64, the weights
    returns: (D,) float64
    """'''

SOLUTION = f'''def {FUNCTION}(X, y, w):
{DOCSTRING}
    ### BEGIN SOLUTION
    {REFERENCE_LINE}
    ### END SOLUTION'''

TEST = f'''"""{FUNCTION} on a hand-checkable case (shape, value) and against torch.autograd on random problems."""
X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=DT)
y = torch.tensor([1.0, 0.0], dtype=DT)
w = torch.tensor([1.0, 1.0], dtype=DT)
grad = {FUNCTION}(X, y, w)
assert_shape(grad, (2,), name="{FUNCTION}(X, y, w) for X of shape (2, 2)")
assert_close(grad, torch.tensor([0.0, 2.0], dtype=DT), name="{FUNCTION} on the 2 x 2 example (residual (0, 2), N = 2)")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(1)
for n, d in [(7, 3), (1, 4), (20, 1)]:
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randn(n, generator=g, dtype=DT)
    w = torch.randn(d, generator=g, dtype=DT)
    X_copy = X.clone()
    w_leaf = w.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(((X @ w_leaf - y) ** 2).sum() / (2 * n), w_leaf)
    assert_close({FUNCTION}(X, y, w), expected, name=f"{FUNCTION} on a ({{n}}, {{d}}) problem (vs torch.autograd)")
    assert_close(X, X_copy, name="X after the call (must not be modified)")
### END HIDDEN TESTS'''

EXERCISE_MD = f"""## Exercise 1 — The gradient of the squared loss ({POINTS} points)

*(An example exercise written by `make new`: replace it by the week's exercises, keeping the layout:
markdown, one solution cell, graded test cells with a public and a hidden part.)*

For data $X \\in \\mathbb{{R}}^{{N\\times D}}$ (samples as rows), targets $y\\in\\mathbb{{R}}^N$ and weights
$w\\in\\mathbb{{R}}^D$, the squared loss is $L(w) = \\frac{{1}}{{2N}}\\lVert Xw - y\\rVert^2$.
**Derive** $\\nabla_w L$ and implement `{FUNCTION}(X, y, w)` without `torch.autograd`."""


def _title_md(ps_id: str, title: str, papers: tuple[str, ...]) -> str:
    cites = "\n".join(f"- {p}" for p in papers) or "- (the week's key papers: full citations, as in `course.toml`)"
    return f"""# {ps_id} — {title}

(What the week is about: the question, the papers' answer, what the exercises build.)

**Learning goals.** After this problem set you can

1. **derive** the gradient of the squared loss and implement it (the example exercise: replace it).

**Key papers**

{cites}

**Points.** Exercise 1: {POINTS} (total {POINTS}).
Every graded cell runs hidden tests as well; passing the visible part is not the whole grade.

**Conventions.** Tensors are `torch.float64`; a batch of $N$ samples of dimension $D$ is an $(N, D)$ tensor
whose **rows** are samples. Solution cells hold only function definitions. Functions must not modify their
arguments."""


def _meta(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def notebook_for(ps_id: str, title: str, papers: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """The instructor notebook of a new problem set (outputs stripped, nbgrader schema 3)."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = [
        v4.new_markdown_cell(_title_md(ps_id, title, papers)),
        v4.new_code_cell(SETUP, metadata=_meta("setup", locked=True)),
        v4.new_markdown_cell(EXERCISE_MD),
        v4.new_code_cell(SOLUTION, metadata=_meta(SOLUTION_ID, solution=True)),
        v4.new_code_cell(TEST, metadata=_meta(TEST_ID, grade=True, locked=True, points=POINTS)),
    ]
    for c in nb.cells:
        c.pop("id", None)  # like the committed notebooks: nbformat 4.4 cells without ids
    nb.nbformat_minor = 4
    return nb


def module_source(ps_id: str, title: str) -> str:
    return f'''"""{ps_id} -- {title}: reference implementations.

Conventions (as in the notebook): tensors are torch.float64; a batch of N samples of dimension D is an
(N, D) tensor whose rows are the samples.
"""

from __future__ import annotations

__all__ = ["{FUNCTION}"]


def {FUNCTION}(X, y, w):
{DOCSTRING}
    {REFERENCE_LINE}
'''


def unit_test_source(ps: ProblemSet) -> str:
    package, _, name = ps.module.rpartition(".")
    imp = f"from {package} import {name} as sol" if package else f"import {name} as sol"
    return f'''"""Unit tests of {ps.module} against independent oracles.

Oracles: torch.autograd (the gradient of the squared loss), central finite differences of the loss.
"""

import pytest
import torch

from coursekit.checks import assert_close
{imp}

DT = torch.float64


def _loss(X, y, w):
    return ((X @ w - y) ** 2).sum() / (2 * X.shape[0])


@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (40, 7)])
def test_{FUNCTION}_matches_autograd(n, d):
    g = torch.Generator().manual_seed(n * 100 + d)
    X, y, w = (torch.randn(n, d, generator=g, dtype=DT), torch.randn(n, generator=g, dtype=DT),
               torch.randn(d, generator=g, dtype=DT))
    leaf = w.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(_loss(X, y, leaf), leaf)
    assert_close(sol.{FUNCTION}(X, y, w), expected, name="{FUNCTION} vs torch.autograd")


def test_{FUNCTION}_matches_central_differences():
    g = torch.Generator().manual_seed(7)
    X, y, w = torch.randn(6, 4, generator=g, dtype=DT), torch.randn(6, generator=g, dtype=DT), torch.zeros(4, dtype=DT)
    eps = 1e-6
    fd = torch.stack([(_loss(X, y, w + eps * e) - _loss(X, y, w - eps * e)) / (2 * eps) for e in torch.eye(4, dtype=DT)])
    assert_close(sol.{FUNCTION}(X, y, w), fd, name="{FUNCTION} vs central differences", atol=1e-7)
'''


def mutant_test_source(ps: ProblemSet) -> str:
    return f'''"""{ps.id} ({ps.title}) mutation check: correct alternatives get full marks, plausible bugs lose the
cells meant to catch them, graded by the real grader (fixtures in tests/mutants/conftest.py).

Written by `make new` for the example exercise: add an alternative and two or three bugs per exercise.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "{ps.id}"

CELLS = {{"ex1": ["{TEST_ID}"]}}  # exercise -> its graded cells
SOLUTION_CELL = {{"ex1": "{SOLUTION_ID}"}}

ALT_EX1 = \'\'\'
def {FUNCTION}(X, y, w):
    """einsum over the samples, mean via len(y)."""
    return torch.einsum("nd,n->d", X, X @ w - y) / len(y)
\'\'\'

ALTERNATIVES = {{  # id -> (exercise, source with the swapped functions)
    "ex1_einsum": ("ex1", ALT_EX1),
}}

BUGS = {{  # id -> (exercise, [(old, new)] edits of the reference, cells that must score 0)
    "ex1_missing_1_over_N": ("ex1", [("{REFERENCE_LINE}", "return X.T @ (X @ w - y)")], ["{TEST_ID}"]),
}}


@pytest.mark.parametrize("variant", list(ALTERNATIVES))
def test_correct_alternative_gets_full_marks(variant, grade_variant, solution_source):
    ex, code = ALTERNATIVES[variant]
    ref = solution_source(PS, SOLUTION_CELL[ex])
    src = swap_functions(ref, code)
    assert src != ref
    g = grade_variant(PS, {{SOLUTION_CELL[ex]: src}})
    assert g.error is None, g.error
    lost = {{c: g.messages.get(c) for c in CELLS[ex] if g.scores[c] != g.max_scores[c]}}
    assert not lost, f"{{variant}} lost points: {{lost}}"


@pytest.mark.parametrize("variant", list(BUGS))
def test_plausible_bug_loses_points(variant, grade_variant, solution_source):
    ex, edits, must_fail = BUGS[variant]
    g = grade_variant(PS, {{SOLUTION_CELL[ex]: edit(solution_source(PS, SOLUTION_CELL[ex]), *edits)}})
    assert g.error is None, g.error
    passed = [c for c in must_fail if g.scores[c] != 0]
    assert not passed, f"{{variant}} not caught by {{passed}}"
    assert g.total < g.max_total
'''


def topic_of(title: str) -> str:
    """A module-name topic from a title: its first three significant words, e.g. "Kernel Regimes of Wide
    Networks" -> "kernel_regimes_wide"."""
    words = [w for w in re.findall(r"[a-z0-9]+", title.lower()) if w not in _SMALL_WORDS]
    topic = "_".join(words[:3])
    return topic if topic and topic[0].isalpha() else f"set_{topic}".rstrip("_")


def _entry(ps_id: str, title: str, module: str, release: dt.date) -> str:
    due = release + dt.timedelta(days=7)
    return (f'[[problem_set]]\nid = "{ps_id}"\ntitle = {json.dumps(title, ensure_ascii=False)}\n'
            f'module = "{module}"\nstatus = "written"\n'
            f'release = "{release.isoformat()}"  # placeholder (a week after the last set): set the dates\n'
            f'due = "{due.isoformat()}T23:59:00"\npoints = {POINTS}\n'
            f'papers = []  # full citations, as in the syllabus (shown in the notebook and on the site)\n')


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of the [[problem_set]] blocks; a block ends before the next table header,
    not counting the comments and blank lines just above it."""
    heads = [i for i, line in enumerate(lines) if line.strip().startswith("[")]
    out = []
    for k, i in enumerate(heads):
        if lines[i].strip() != "[[problem_set]]":
            continue
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        while end > i + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        out.append((i, end))
    return out


def manifest_text(text: str, ps_id: str, title: str, module: str, existing: ProblemSet | None,
                  last_release: dt.date) -> str:
    """course.toml with ``ps_id`` added (after the last problem set) or, if it is planned, made written."""
    lines = text.splitlines(keepends=True)
    blocks = _blocks(lines)
    if existing is None:
        at = blocks[-1][1] if blocks else len(lines)
        new = "\n" + _entry(ps_id, title, module, last_release + dt.timedelta(days=7))
        return "".join(lines[:at]) + new + "".join(lines[at:])
    for start, end in blocks:
        block = lines[start:end]
        if not any(re.match(rf'\s*id\s*=\s*"{ps_id}"', line) for line in block):
            continue
        out = [re.sub(r'^(\s*status\s*=\s*)"planned"', r'\1"written"', line) for line in block]
        if not any(re.match(r"\s*module\s*=", line) for line in out):
            title_at = next(i for i, line in enumerate(out) if re.match(r"\s*title\s*=", line))
            out.insert(title_at + 1, f'module = "{module}"\n')
        return "".join(lines[:start] + out + lines[end:])
    raise ManifestError(f"{ps_id}: cannot find its [[problem_set]] block in course.toml")


def new(ps_id: str, title: str | None = None, topic: str | None = None, path: Path = MANIFEST) -> ProblemSet:
    """Create problem set ``ps_id``; returns its manifest entry. Refuses (ManifestError, nothing written) an
    id already written, a malformed id or topic, or a file that already exists."""
    if not ID.match(ps_id or ""):
        raise ManifestError(f"PS={ps_id or ''!r}: a problem set id is 'ps' and two digits, e.g. PS=ps12")
    sets = manifest.load(path)
    existing = next((p for p in sets if p.id == ps_id), None)
    if existing is not None and existing.written:
        raise ManifestError(f"{ps_id} already exists in {Path(path).name} (status written): edit "
                            f"{existing.source_notebook.relative_to(existing.root)} instead, or pick a new id")
    title = (title or "").strip() or (existing.title if existing else "")
    if not title:
        raise ManifestError(f'{ps_id} is not in {Path(path).name}: give its title, TITLE="..."')
    if existing is not None and existing.module:
        module = existing.module
    else:
        topic = topic or topic_of(title)
        if not TOPIC.match(topic):
            raise ManifestError(f"TOPIC={topic!r}: lower-case letters, digits and underscores")
        module = f"solutions.{ps_id}_{topic.removeprefix(ps_id + '_')}"
    text = Path(path).read_text(encoding="utf-8")
    last = max(p.release for p in sets)
    staged = Path(path).with_name(f".{Path(path).name}.new")  # checked by the manifest's own parser first
    staged.write_text(manifest_text(text, ps_id, title, module, existing, last), encoding="utf-8")
    try:
        ps = next(p for p in manifest.load(staged) if p.id == ps_id)
    except Exception:
        staged.unlink()
        raise
    files = {ps.source_notebook: None, ps.solution_file: module_source(ps_id, ps.title),
             ps.unit_tests: unit_test_source(ps), ps.mutant_tests: mutant_test_source(ps)}
    taken = [str(f.relative_to(ps.root)) for f in files if f.exists()]
    if taken:
        staged.unlink()
        raise ManifestError(f"{ps_id}: {', '.join(taken)} already exist(s); remove them or pick another id")
    for f, src in files.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        if src is None:
            nbformat.write(notebook_for(ps_id, ps.title, ps.papers), str(f))
        else:
            f.write_text(src, encoding="utf-8")
    os.replace(staged, path)
    return ps
