"""Imported last by the grader's fork server (`sandbox`), after every preloaded module: what
each grading process would otherwise build for itself after its fork, built once here.

- the BLAS/OpenMP thread-pool controller (threadpoolctl scans the loaded libraries);
- the two IPython shells, the student's process's and the trusted process's (`_child.new_shell`
  takes its own and drops the other);
- then the heap is frozen (``gc.freeze``): a collection in a grading process does not walk,
  and so copy, the preloaded objects.

Together about 50 ms of CPU per submission.
"""

import gc

from . import _child, _trusted

CONTROLLER = None
SHELLS: dict = {}
try:  # the fork server must start even if this fails: each process then builds its own
    CONTROLLER = _child.thread_controller()
    SHELLS.update(child=_child.make_shell(), trusted=_child.make_shell(_trusted.SetupGlobals()))
except Exception:  # noqa: BLE001
    SHELLS.clear()
gc.collect()
gc.freeze()
