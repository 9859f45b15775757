"""Every written problem set: well-formed instructor notebook whose solution regions equal `solutions`."""

import pytest

from coursekit import manifest
from coursekit.validate import check_source


@pytest.mark.parametrize("ps", manifest.select(None), ids=lambda p: p.id)
def test_source_is_well_formed_and_in_sync(ps):
    assert check_source(ps) == []
