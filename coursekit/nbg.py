"""A scratch nbgrader course: the one place where nbgrader's own apps are driven.

Used to release (``generate_assignment``) and, in validation and benchmarks, to grade
with plain ``nbgrader autograde`` for comparison with this project's grader.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from .manifest import CHECKS_SOURCE, HELPER_NAME, ProblemSet


class NbgraderError(RuntimeError):
    pass


class ScratchCourse:
    """An nbgrader course directory in a temporary folder, holding one problem set."""

    def __init__(self, ps: ProblemSet, root: Path | None = None, timeout: int = 600):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        self.ps = ps
        self._tmp = None if root else tempfile.mkdtemp(prefix=f"nbgrader-{ps.id}-")
        self.root = Path(root or self._tmp)
        src = self.root / "source" / ps.id
        src.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ps.source_notebook, src / f"{ps.id}.ipynb")
        shutil.copyfile(CHECKS_SOURCE, src / HELPER_NAME)
        cfg = Config()
        cfg.CourseDirectory.root = str(self.root)
        cfg.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        cfg.ExecutePreprocessor.timeout = timeout
        cfg.Execute.timeout = timeout
        cfg.Execute.interrupt_on_timeout = True
        cfg.Exchange.root = str(self.root / "exchange")
        # kernels over IPC in the scratch folder: over TCP, ipykernel warns on every start that
        # traffic is unencrypted ("Kernel is running over TCP without encryption")
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = str(self.root / "kernel")
        self.config = cfg
        self.coursedir = CourseDirectory(config=cfg)
        self.api = NbGraderAPI(coursedir=self.coursedir, config=cfg)
        self.api.log.setLevel(logging.ERROR)

    def generate(self) -> Path:
        result = self.api.generate_assignment(self.ps.id, force=True, create=True)
        if not result.get("success"):
            raise NbgraderError(f"nbgrader generate_assignment failed for {self.ps.id}:\n"
                                f"{result.get('error') or result.get('log')}")
        return self.root / "release" / self.ps.id

    def submit(self, student: str, notebook_path: Path) -> None:
        dest = self.root / "submitted" / student / self.ps.id
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook_path, dest / f"{self.ps.id}.ipynb")
        shutil.copyfile(CHECKS_SOURCE, dest / HELPER_NAME)

    def autograde(self, student: str) -> dict:
        """``nbgrader autograde`` one student; per grade_id auto scores from the gradebook."""
        from nbgrader.api import Gradebook

        result = self.api.autograde(self.ps.id, student, force=True, create=True)
        if not result.get("success"):
            raise NbgraderError(f"nbgrader autograde failed for {student}:\n{result.get('error') or result.get('log')}")
        with Gradebook(self.config.CourseDirectory.db_url) as gb:
            nb = gb.find_submission_notebook(self.ps.id, self.ps.id, student)
            return {g.name: float(g.auto_score or 0.0) for g in nb.grades}

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
