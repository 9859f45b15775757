"""The student path in a real browser: JupyterLab (with nbgrader's lab extension) on a copy of a
released problem set, driven by headless Chromium as a student would.

1. ``test_fill_run_all_validate``: open the notebook, type a correct answer to the first exercise
   into its solution cell (the instructor's solution, read from source/ at test time), Run All,
   press Validate. The student sees that exercise's public tests pass, Run All stop at the first
   cell after it that calls a stub (with its NotImplementedError), and the Validate dialog list
   every other graded cell with its error, never the first exercise's cells; no line of a hidden
   test appears on the page.
2. ``test_edited_locked_cell``: a notebook in which the student edited a locked test cell (here: on
   disk, the cell is read-only in JupyterLab); Validate tells them that the test cell changed.

Screenshots (build/e2e/): the notebook after Run All, the Validate dialog, the changed-cell dialog.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from e2ekit import ROOT, all_lines, cell_text, found_in, hidden_test_lines, revealing, start_lab, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

PS = os.environ.get("DLT_E2E_PS", "ps03")
RELEASE = ROOT / "release" / PS
SOURCE_NB = ROOT / "source" / PS / f"{PS}.ipynb"
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
TIMEOUT_MS = 120_000


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def first_exercise(nb) -> tuple[int, str, list[int]]:
    """(index of the first solution cell, its grade_id, indices of the graded cells up to the next
    solution cell)."""
    cells = nb["cells"]
    sol = next(i for i, c in enumerate(cells) if nbgrader(c).get("solution") and c["cell_type"] == "code")
    tests = []
    for i in range(sol + 1, len(cells)):
        if nbgrader(cells[i]).get("solution"):
            break
        if nbgrader(cells[i]).get("grade"):
            tests.append(i)
    return sol, nbgrader(cells[sol])["grade_id"], tests


def instructor_answer(grade_id: str) -> str:
    """The instructor's solution cell, markers removed: what a correct student would type."""
    nb = json.loads(SOURCE_NB.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if nbgrader(c).get("grade_id") == grade_id)
    return "\n".join(ln for ln in cell_text(cell).splitlines() if ln.strip() not in MARKERS)


def docstring(cell) -> str:
    """The first line of a test cell (its one-line docstring), without quotes."""
    return cell_text(cell).splitlines()[0].strip().strip('"').strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not RELEASE.exists():
        pytest.skip(f"{RELEASE} missing: run `make release PS={PS}`")
    root = tmp_path_factory.mktemp("lab")
    for case in ("student", "edited"):
        shutil.copytree(RELEASE, root / case)
    server = start_lab(root, tmp_path_factory.mktemp("home"), root.parent / "jupyterlab.log")
    try:
        yield server
    finally:
        stop(server.proc, f"{server.base}/api/shutdown?token={server.token}")


def open_notebook(browser, lab, rel: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(lab.url(rel))
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    # the kernel is up and idle
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }"
    )
    return page


def cells(page):
    return page.locator(".jp-Notebook > .jp-Cell, .jp-Notebook .jp-WindowedPanel-viewport > .jp-Cell")


def validate(page) -> str:
    """Press nbgrader's Validate button; the text of the dialog it opens."""
    page.locator(".validate-button").filter(visible=True).first.click()  # the current tab's, not a restored one
    dialog = page.locator(".jp-Dialog-content").filter(has_text="Validat")
    dialog.wait_for()
    page.wait_for_timeout(500)  # let the dialog lay out before the screenshot
    return dialog.inner_text()


def test_fill_run_all_validate(browser, lab, output_dir):
    t0 = time.monotonic()
    nb = json.loads((RELEASE / f"{PS}.ipynb").read_text(encoding="utf-8"))
    sol, grade_id, ex_tests = first_exercise(nb)
    graded = [i for i, c in enumerate(nb["cells"]) if nbgrader(c).get("grade")]
    others = [i for i in graded if i not in ex_tests]
    assert ex_tests and others, "the problem set needs an exercise with tests and more graded cells after it"
    answer = instructor_answer(grade_id)

    page = open_notebook(browser, lab, f"student/{PS}.ipynb")
    dom = cells(page)
    assert dom.count() == len(nb["cells"]), f"JupyterLab shows {dom.count()} cells, the notebook has {len(nb['cells'])}"

    # the student types the answer into the solution cell's editor
    editor = dom.nth(sol).locator(".cm-content")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(answer)
    typed = page.evaluate(
        f"() => window.jupyterapp.shell.currentWidget.content.model.cells.get({sol}).sharedModel.getSource()"
    )
    assert typed.strip() == answer.strip(), "the editor holds something else than what was typed"

    # Run > Run All Cells
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')].map(e => e.textContent);"
        " return p.some(t => /\\[\\d+\\]/.test(t)) && !p.some(t => t.includes('*')); }"
    )
    t_run = time.monotonic() - t0

    def outputs(i: int) -> str:
        return dom.nth(i).locator(".jp-OutputArea").inner_text() if dom.nth(i).locator(".jp-OutputArea").count() else ""

    def errored(i: int) -> bool:
        return dom.nth(i).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').count() > 0

    for i in ex_tests:
        prompt = dom.nth(i).locator(".jp-InputArea-prompt").inner_text()
        assert any(ch.isdigit() for ch in prompt), f"cell {i} ({nbgrader(nb['cells'][i])['grade_id']}) did not run: {prompt}"
        assert not errored(i), f"public test {nbgrader(nb['cells'][i])['grade_id']} fails on a correct answer:\n{outputs(i)}"
    # Run All stops at the first failing cell: the first test of the next exercise, with its message
    failing = [i for i in range(len(nb["cells"])) if errored(i)]
    assert len(failing) == 1 and failing[0] > ex_tests[-1], f"Run All should stop at one cell after the exercise: {failing}"
    first_fail = failing[0]
    assert "NotImplementedError" in outputs(first_fail), outputs(first_fail)[-500:]

    dom.nth(ex_tests[0]).scroll_into_view_if_needed()
    page.evaluate(f"() => document.querySelectorAll('.jp-Notebook .jp-Cell')[{sol}].scrollIntoView()")
    page.wait_for_timeout(300)
    page.screenshot(path=str(output_dir / f"{PS}_after_run_all.png"))
    dom.nth(first_fail).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(output_dir / f"{PS}_first_failure.png"))

    hidden = revealing(hidden_test_lines(SOURCE_NB), all_lines(RELEASE / f"{PS}.ipynb") | set(answer.splitlines()))
    assert hidden, "the instructor notebook has no hidden test lines to look for"
    shown = found_in(page.locator("body").inner_text(), hidden)
    assert not shown, f"hidden test lines on the page after Run All: {shown[:5]}"

    # Validate (nbgrader): saves the notebook, runs it on the server, lists the failing graded cells
    t1 = time.monotonic()
    text = validate(page)
    t_validate = time.monotonic() - t1
    page.screenshot(path=str(output_dir / f"{PS}_validate_dialog.png"))
    page.locator(".jp-Dialog-content").screenshot(path=str(output_dir / f"{PS}_validate_dialog_only.png"))
    (output_dir / f"{PS}_validate_dialog.txt").write_text(text, encoding="utf-8")

    n_failed = text.count("The following cell failed:")
    assert n_failed == len(others), f"Validate lists {n_failed} failing cells, expected {len(others)}:\n{text[:2000]}"
    for i in ex_tests:
        assert docstring(nb["cells"][i]) not in text, f"Validate lists {nbgrader(nb['cells'][i])['grade_id']}, which passes"
    for i in others:
        assert docstring(nb["cells"][i]) in text, f"Validate does not list the failing {nbgrader(nb['cells'][i])['grade_id']}"
    assert text.count("NotImplementedError") >= len(others), "each failing cell should say why"
    shown = found_in(page.locator("body").inner_text(), hidden)
    assert not shown, f"hidden test lines in the Validate dialog: {shown[:5]}"

    saved = json.loads((lab.root / "student" / f"{PS}.ipynb").read_text(encoding="utf-8"))
    assert cell_text(saved["cells"][sol]).strip() == answer.strip(), "Validate did not save the typed answer"
    page.close()
    print(f"\n[e2e] {PS}: open+type+Run All {t_run:.1f} s, Validate {t_validate:.1f} s, total {time.monotonic() - t0:.1f} s")


def test_edited_locked_cell(browser, lab, output_dir):
    t0 = time.monotonic()
    path = lab.root / "edited" / f"{PS}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    _, _, ex_tests = first_exercise(nb)
    cell = nb["cells"][ex_tests[0]]
    assert nbgrader(cell).get("locked") and cell["metadata"].get("editable") is False
    first = cell_text(cell).splitlines()[0]
    cell["source"] = f"{first}\n# the student decided this test was wrong\npass\n"
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")

    page = open_notebook(browser, lab, f"edited/{PS}.ipynb")
    text = validate(page)
    page.screenshot(path=str(output_dir / f"{PS}_validate_changed_cell.png"))
    (output_dir / f"{PS}_validate_changed_cell.txt").write_text(text, encoding="utf-8")
    assert "The source of the following cell has changed, but it should not have!" in text, text[:2000]
    assert text.count("has changed") == 1, "only one cell was edited"
    assert "the student decided this test was wrong" in text, "the dialog should show the edited cell"
    assert "Success" not in text
    page.close()
    print(f"\n[e2e] {PS}: edited locked cell, Validate {time.monotonic() - t0:.1f} s")
