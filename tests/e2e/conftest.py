"""Fixtures of the browser tests: the system Chromium driven by Playwright, and the output folder
for screenshots (build/e2e/, git-ignored). No browser is downloaded: Playwright is pointed at
Debian's ``chromium`` (``.ci/run`` installs it). Without Chromium the tests skip with the reason,
except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2ekit import BROWSER_ARGS, OUTPUT, chromium_path


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        msg = "Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(msg + " -- under CI the browser tests must run")
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
