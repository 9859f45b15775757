"""The settings of grading, read once (in `cli`) and handed to every stage: `make grade`, the
otter zip (`make autograder`), the demo and the bench grade under the same limits.

Each value is taken from, in this order: a command-line flag, the environment variable the
Makefile exports (CELL_TIMEOUT, MEMORY_GB, JOBS, OUT, DB), ``nbgrader_config.py`` (the
gradebook URL only), the built-in default (`sandbox.Limits`). The gradebook is ``--db``/DB if
given, else ``<OUT>/gradebook.db`` when OUT is given, else nbgrader_config.py's ``db_url``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .manifest import Layout
from .sandbox import Limits

_DEFAULT = Limits()


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    cell_timeout: float = _DEFAULT.cell_timeout  # seconds per cell
    memory_gb: float = _DEFAULT.memory_bytes / 2**30  # per submission
    jobs: int = 0  # submissions graded at once; 0 = one per core
    out: Path | None = None  # a batch's output folder; None = grading/
    db: str | None = None  # SQLAlchemy URL of the gradebook; None = see module docstring
    grace: float = _DEFAULT.grace  # seconds a runaway cell gets to stop before it is killed
    job_threads: int = 0  # threads per submission (torch, BLAS); 0 = the cores shared among the workers
    layout: Layout = Layout()

    def __post_init__(self):
        if not self.cell_timeout > 0:
            raise SettingsError(f"CELL_TIMEOUT must be a positive number of seconds, not {self.cell_timeout!r}")
        if not self.memory_gb > 0:
            raise SettingsError(f"MEMORY_GB must be a positive number, not {self.memory_gb!r}")
        if self.jobs < 0:
            raise SettingsError(f"JOBS must be 0 (one per core) or more, not {self.jobs!r}")
        if self.job_threads < 0:
            raise SettingsError(f"threads per submission must be 0 (the cores shared) or more, not {self.job_threads!r}")

    @classmethod
    def resolve(cls, *, cell_timeout=None, memory_gb=None, jobs=None, out=None, db=None,
                env=None, layout: Layout = Layout()) -> Settings:
        """Flags (the keyword arguments; None = not given) over ``env`` (default os.environ)."""
        env = os.environ if env is None else env

        def pick(flag, name, convert, default):
            if flag is not None:
                return convert(flag)
            raw = (env.get(name) or "").strip()
            if not raw:
                return default
            try:
                return convert(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r} is not a number") from exc

        out_value = pick(out, "OUT", lambda v: Path(v).expanduser().resolve(), None)
        return cls(cell_timeout=pick(cell_timeout, "CELL_TIMEOUT", float, cls.cell_timeout),
                   memory_gb=pick(memory_gb, "MEMORY_GB", float, cls.memory_gb),
                   jobs=pick(jobs, "JOBS", int, 0), out=out_value,
                   db=pick(db, "DB", str, None), layout=layout)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1

    @property
    def threads(self) -> int:
        """Threads per submission: ``job_threads``, else the cores shared among the workers."""
        return self.job_threads or max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def limits(self) -> Limits:
        return Limits(cell_timeout=self.cell_timeout, grace=self.grace, memory_bytes=int(self.memory_gb * 2**30),
                      threads=self.threads)

    @property
    def out_dir(self) -> Path:
        return self.out or self.layout.grading

    @property
    def gradebook_url(self) -> str:
        if self.db:
            return self.db
        if self.out is not None:
            return f"sqlite:///{self.out / 'gradebook.db'}"
        return nbgrader_db_url(self.layout)


def nbgrader_db_url(layout: Layout = Layout()) -> str:
    """``nbgrader_config.py``'s gradebook URL (a relative SQLite path made absolute against the
    repository); ``grading/gradebook.db`` when it names none."""
    url = None
    if layout.nbgrader_config.exists():
        from traitlets.config.loader import PyFileConfigLoader

        cfg = PyFileConfigLoader(layout.nbgrader_config.name, path=str(layout.nbgrader_config.parent)).load_config()
        url = cfg.CourseDirectory.get("db_url") if "CourseDirectory" in cfg else None
    url = url or "sqlite:///grading/gradebook.db"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{layout.root / url[len('sqlite:///'):]}"
    return url


def sqlite_parent(url: str) -> Path | None:
    """The folder of a SQLite gradebook (to create it), None for a server database."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).parent
    return None
