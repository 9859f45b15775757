"""coursekit: the course pipeline, one module per stage.

manifest (course.toml, where files live) -> notebook (parse nbgrader markup) -> assignment
(a problem set with its parsed notebook; a batch's output folder) and settings (limits, jobs,
gradebook, output folder) -> release (nbgrader) -> autograder (otter zip, otter_plugin)
-> collect (folder or LMS zip -> submissions) -> assemble (submission -> cells) -> sandbox
(_child runs student code, _trusted runs the tests, wire is what crosses) -> scoring -> batch
(parallel grading, saved results) -> gradebook (nbgrader's database) -> reports (CSV, table)
and feedback -> backends (coursekit, nbgrader, otter) -> validate (the paths agree) -> bench.
"""

import os as _os
import sys as _sys

# nbgrader and otter call console scripts (alembic, otter) by name: make the running
# interpreter's bin folder come first even when the venv was not activated.
_bin = _os.path.dirname(_sys.executable)
if _bin not in _os.environ.get("PATH", "").split(_os.pathsep):
    _os.environ["PATH"] = _bin + _os.pathsep + _os.environ.get("PATH", "")
