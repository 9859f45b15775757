"""Collect submissions of one problem set from a folder or an LMS zip.

Accepted layouts (checked in this order):
- a zip exported by the LMS whose member names follow nbgrader's ``zip_collect`` file-name
  convention (``FileNameCollectorPlugin``'s regular expression, configurable with
  `coursekit grade --name-regexp`), or are ``<student_id>.ipynb`` / ``<student_id>/<anything>.ipynb``;
- a folder with the same names, or nbgrader's ``submitted/<student_id>/<ps>/<ps>.ipynb``.

Problems (a zip-slip name, two submissions for one student, an unknown id) never stop the
collection: each becomes a flag (not on the roster) or a note (several submissions) on the
student, or a line of ``Collected.rejected``.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# nbgrader's FileNameCollectorPlugin default, plus plain "<student>.ipynb"
ZIP_COLLECT_REGEXP = r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"
_SIMPLE = re.compile(r"^(?P<student_id>[A-Za-z0-9][A-Za-z0-9_.\-]*)$")
_TS_FORMATS = ("%Y-%m-%d-%H-%M-%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y%m%dT%H%M%S")


@dataclass
class Submission:
    student_id: str
    path: Path | None  # None when nothing gradable arrived
    timestamp: dt.datetime | None = None  # the submission time (file name or timestamp.txt): lateness
    notes: list[str] = field(default_factory=list)  # informational
    flags: list[str] = field(default_factory=list)  # for a TA to look at (not on the roster)
    mtime: dt.datetime | None = None  # a zip member's modification time: only to order two submissions


@dataclass
class Collected:
    submissions: list[Submission]
    rejected: list[str] = field(default_factory=list)  # files that belong to nobody


def _parse_ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in _TS_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _identify(name: str, ps_id: str, regexp: re.Pattern) -> tuple[str | None, dt.datetime | None]:
    parts = PurePosixPath(name).parts
    base = parts[-1]
    m = regexp.match(base)
    if m and m.groupdict().get("student_id"):
        return m.group("student_id"), _parse_ts(m.groupdict().get("timestamp"))
    stem = PurePosixPath(base).stem
    if len(parts) >= 2 and _SIMPLE.match(parts[0]) and parts[0] not in ("submitted", ps_id):
        return parts[0], None  # <student>/<...>.ipynb or <student>/<ps>/<ps>.ipynb
    if len(parts) >= 3 and parts[0] == "submitted":
        return parts[1], None
    if _SIMPLE.match(stem) and stem != ps_id:
        return stem, None
    return None, None


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not (p.is_absolute() or ".." in p.parts or name.startswith("/") or ":" in p.parts[0])


def collect(source: Path, ps_id: str, dest: Path, *, name_regexp: str = ZIP_COLLECT_REGEXP,
            roster: set[str] | None = None) -> Collected:
    """Gather the notebooks in ``source`` (folder or .zip) into ``dest/<student>/<ps>.ipynb``.
    Lateness is not judged here: the submission time goes to the gradebook, and the reports
    apply the late policy (`coursekit.late`)."""
    regexp = re.compile(name_regexp)
    source = Path(source)
    found: dict[str, list[Submission]] = {}
    rejected: list[str] = []
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    def add(name: str, data: bytes, mtime: dt.datetime | None):
        sid, ts = _identify(name, ps_id, regexp)
        if sid is None:
            rejected.append(f"{name}: cannot tell whose submission this is")
            return
        n = len(found.get(sid, []))
        target = dest / sid / f"{ps_id}.{n}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        found.setdefault(sid, []).append(Submission(sid, target, ts, mtime=mtime))

    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.endswith(".ipynb"):
                    continue
                if PurePosixPath(info.filename).name.startswith("."):
                    continue
                if not _safe_member(info.filename):
                    rejected.append(f"{info.filename}: unsafe path in zip (zip slip) -- not extracted")
                    continue
                with zf.open(info) as fh:
                    data = fh.read(64 * 2**20 + 1)
                mtime = dt.datetime(*info.date_time) if info.date_time[0] > 1980 else None
                add(info.filename, data, mtime)
    elif source.is_dir():
        for path in sorted(source.rglob("*.ipynb")):
            rel = path.relative_to(source).as_posix()
            if ".ipynb_checkpoints" in rel or path.name.startswith("."):
                continue
            ts = None
            stamp = path.parent / "timestamp.txt"
            if stamp.exists():
                ts = _parse_ts(stamp.read_text().strip()[:19])
            with path.open("rb") as fh:
                data = fh.read(64 * 2**20 + 1)
            add(rel, data, ts)
    else:
        raise FileNotFoundError(f"{source}: not a folder or a zip file")

    subs = []
    for sid in sorted(found):
        cands = found[sid]
        chosen = cands[-1]
        notes, flags = [], []
        if len(cands) > 1:
            when = (lambda c: c.timestamp) if all(c.timestamp for c in cands) else (lambda c: c.mtime)
            if all(when(c) for c in cands):
                chosen = max(cands, key=when)
                notes.append(f"{len(cands)} submissions; graded the latest ({when(chosen):%Y-%m-%d %H:%M})")
            else:
                notes.append(f"{len(cands)} submissions without timestamps; graded the last one by name")
        if roster is not None and sid not in roster:
            flags.append("student id not on the roster")
        final = dest / sid / f"{ps_id}.ipynb"
        final.write_bytes(chosen.path.read_bytes())
        for c in cands:
            c.path.unlink(missing_ok=True)
        subs.append(Submission(sid, final, chosen.timestamp, notes, flags))
    return Collected(subs, rejected)
