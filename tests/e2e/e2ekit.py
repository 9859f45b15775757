"""Helpers of the browser tests: a JupyterLab server on a scratch folder, and what counts as
hidden text on a page. The fixtures (browser, output folder) are in conftest.py.


Without Chromium the tests skip with the reason, except under CI (``CI`` set), where they fail.
Screenshots go to ``build/e2e/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "build" / "e2e"
VENV_BIN = Path(sys.executable).parent
BROWSER_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]  # root in CI needs --no-sandbox


def chromium_path() -> str | None:
    for cand in (os.environ.get("DLT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout:.0f} s:\n{log.read_text()[-3000:] if log else ''}")


def stop(proc: subprocess.Popen, shutdown_url: str | None = None) -> None:
    """Stop a server started with ``start_new_session=True`` and everything in its session."""
    if shutdown_url and proc.poll() is None:
        try:
            urllib.request.urlopen(urllib.request.Request(shutdown_url, method="POST", data=b""), timeout=10)
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue


class Lab:
    """A JupyterLab server (nbgrader's lab and server extensions as installed in .venv)."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen):
        self.root, self.port, self.token, self.proc = root, port, token, proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, rel: str) -> str:
        return f"{self.base}/lab/tree/{rel}?reset&token={self.token}"  # reset: no restored tabs


def start_lab(root: Path, home: Path, log: Path) -> Lab:
    """JupyterLab on ``root``; user settings, runtime files and workspaces under ``home``."""
    settings = home / "lab-settings"
    for plugin, values in {
        # all cells in the DOM (no virtual scrolling), so the page shows every cell
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        # no news or update check (no network)
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        f = settings / plugin
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # the python3 kernel runs `python`: this venv's
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_DATA_DIR=str(home / "data"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.pop("JUPYTER_PATH", None)
    port, token = free_port(), "e2e-" + os.urandom(8).hex()
    cmd = [
        str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--ServerApp.open_browser=False",
    ]
    fh = open(log, "w")
    # cwd = root: nbgrader's Validate handler reads nbgrader_config.py from the server's cwd
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(root, port, token, proc)
    try:
        wait_http(f"{lab.base}/api/status?token={token}", 120, proc, log)
    except Exception:
        stop(proc)
        raise
    return lab


# --------------------------------------------------------------------------- hidden text


def cell_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def region_lines(nb_path: Path, begin: str, end: str) -> set[str]:
    """Stripped lines between ``begin`` and ``end`` marker lines in the cells of a notebook."""
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    out, inside = set(), False
    for cell in nb["cells"]:
        for line in cell_text(cell).splitlines():
            s = line.strip()
            if s == begin:
                inside = True
            elif s == end:
                inside = False
            elif inside:
                out.add(s)
        inside = False
    return out


def hidden_test_lines(source_nb: Path) -> set[str]:
    return region_lines(source_nb, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def solution_lines(source_nb: Path) -> set[str]:
    return region_lines(source_nb, "### BEGIN SOLUTION", "### END SOLUTION")


def all_lines(nb_path: Path) -> set[str]:
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    return {ln.strip() for c in nb["cells"] for ln in cell_text(c).splitlines()}


def revealing(lines: set[str], public: set[str], min_chars: int = 8) -> set[str]:
    """The lines that would reveal something: not shown to students anyway (not a line, or part
    of a line, of the public text) and long enough to mean something."""
    shown = "\n".join(" ".join(p.split()) for p in public)
    return {s for s in lines - public if len(s) >= min_chars and " ".join(s.split()) not in shown}


def found_in(text: str, secrets: set[str], substring_from: int = 30) -> list[str]:
    """Secret lines that ``text`` shows: as a line of its own, or (long lines) anywhere."""
    norm = lambda s: " ".join(s.split())  # noqa: E731
    lines = {norm(ln) for ln in text.splitlines()}
    hay = norm(text)
    return sorted(s for s in secrets if norm(s) in lines or (len(s) >= substring_from and norm(s) in hay))
