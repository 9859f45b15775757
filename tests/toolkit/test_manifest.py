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


def test_planned_sets_are_listed_not_skipped_silently():
    planned = [p for p in manifest.load() if not p.written]
    assert planned, "some problem sets are not written yet"
    with pytest.raises(manifest.ManifestError, match="not written yet"):
        manifest.select(planned[0].id)


def test_unknown_id_and_bad_manifest_are_clear_errors(tmp_path):
    with pytest.raises(manifest.ManifestError, match="unknown problem set"):
        manifest.select("ps99")
    bad = tmp_path / "course.toml"
    bad.write_text('[[problem_set]]\nid = "ps01"\ntitle = "x"\n')
    with pytest.raises(manifest.ManifestError, match="missing"):
        manifest.load(bad)
