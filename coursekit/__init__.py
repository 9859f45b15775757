"""coursekit: the course pipeline, one module per stage.

manifest -> notebook (parse nbgrader markup) -> release (nbgrader) -> autograder (otter)
-> assemble (submission -> cells) -> sandbox (_child runs student code, _trusted runs the
tests, wire is what crosses) -> grade (batch, gradebook, CSV) -> feedback -> validate (the
grading paths agree) -> bench.
"""

import os as _os
import sys as _sys

# nbgrader and otter call console scripts (alembic, otter) by name: make the running
# interpreter's bin folder come first even when the venv was not activated.
_bin = _os.path.dirname(_sys.executable)
if _bin not in _os.environ.get("PATH", "").split(_os.pathsep):
    _os.environ["PATH"] = _bin + _os.pathsep + _os.environ.get("PATH", "")
