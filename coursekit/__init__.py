"""coursekit: the course pipeline, one module per stage.

manifest -> notebook (parse nbgrader markup) -> release (nbgrader) -> autograder (otter)
-> sandbox/engine (run a submission safely) -> grade (batch, gradebook, CSV) -> feedback
-> validate (both grading paths agree) -> bench.
"""

import os as _os
import sys as _sys

# nbgrader and otter call console scripts (alembic, otter) by name: make the running
# interpreter's bin folder come first even when the venv was not activated.
_bin = _os.path.dirname(_sys.executable)
if _bin not in _os.environ.get("PATH", "").split(_os.pathsep):
    _os.environ["PATH"] = _bin + _os.pathsep + _os.environ.get("PATH", "")
