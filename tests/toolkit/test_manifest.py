"""The course manifest lists all eleven problem sets and drives every target."""

import pytest

from coursekit import manifest


def test_eleven_problem_sets_in_order_with_dates_and_papers():
    sets = manifest.load()
    assert [p.id for p in sets] == [f"ps{i:02d}" for i in range(1, 12)]
    for p in sets:
        assert p.papers and p.points == 100 and p.due.date() >= p.release
        assert p.status in manifest.STATUSES


def test_written_sets_have_their_files():
    for p in manifest.select(None):
        assert p.source_notebook.exists(), p.id
        assert p.module and p.module.startswith("solutions.")


def test_planned_sets_are_listed_not_skipped_silently(tmp_path):
    """A set still "planned" is listed, and asking for it is a clear error (on a copy of the
    manifest with its last set planned: the course itself may have none left)."""
    text = manifest.MANIFEST.read_text()
    head, _, last = text.rpartition("[[problem_set]]")
    last = last.replace('status = "written"', 'status = "planned"')
    copy = tmp_path / "course.toml"
    copy.write_text(head + "[[problem_set]]" + last)
    sets = manifest.load(copy)
    planned = [p for p in sets if not p.written]
    assert [p.id for p in planned] == ["ps11"] and len(sets) == 11
    with pytest.raises(manifest.ManifestError, match="not written yet"):
        manifest.select("ps11", path=copy)


def test_unknown_id_and_bad_manifest_are_clear_errors(tmp_path):
    with pytest.raises(manifest.ManifestError, match="unknown problem set"):
        manifest.select("ps99")
    bad = tmp_path / "course.toml"
    bad.write_text('[[problem_set]]\nid = "ps01"\ntitle = "x"\n')
    with pytest.raises(manifest.ManifestError, match="missing"):
        manifest.load(bad)
