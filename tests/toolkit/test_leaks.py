"""Hidden tests and reference solutions never reach a student: not in the release notebook,
not in its metadata, not in the other released files."""

import json

import pytest

from coursekit import manifest, notebook
from coursekit.assignment import Assignment


def secrets(ps):
    return Assignment.of(ps).secrets


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_release_contains_no_hidden_test_or_solution_line(ps):
    lines = secrets(ps)
    assert lines, "the instructor notebook has hidden tests and solutions"
    for path in ps.release_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaked = [s for s in lines if s in text and s not in _public_text(ps)]
            assert not leaked, f"{path.name} contains: {leaked[:3]}"


def _public_text(ps):
    nb = notebook.read(ps.source_notebook)
    # a line that also appears in a public part (e.g. a repeated assert) is not a leak
    return "\n".join(notebook.public_source(c.source) if c.kind == "test" else
                     (notebook.stub_source(c.source) if c.kind == "solution" else c.source)
                     for c in notebook.cells(nb))


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_release_metadata_has_no_source(ps):
    nb = json.loads(ps.release_notebook.read_text())
    for cell in nb["cells"]:
        meta = json.dumps(cell.get("metadata", {}))
        assert "BEGIN HIDDEN" not in meta and "BEGIN SOLUTION" not in meta
    assert "BEGIN HIDDEN" not in ps.release_notebook.read_text()
    assert "BEGIN SOLUTION" not in ps.release_notebook.read_text()
