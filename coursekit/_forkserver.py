"""Imported last by the grader's fork server (`sandbox`), after every preloaded module: what
each grading process would otherwise build for itself after its fork, built once here.

- the BLAS/OpenMP thread-pool controller (threadpoolctl scans the loaded libraries), and the
  pools set to one thread each (`_child.limit_threads`);
- the index of ``sys.modules`` by package the trusted process pickles functions with;
- the two IPython shells, the student's process's and the trusted process's (`_child.new_shell`
  takes its own and drops the other), each having transformed a first cell;
- then the heap is frozen (``gc.freeze``): a collection in a grading process does not walk,
  and so copy, the preloaded objects.

Together about 250 ms of CPU per submission.
"""

import gc
import linecache

from . import _child, _trusted

CONTROLLER = None
SHELLS: dict = {}
try:  # the fork server must start even if this fails: each process then builds its own
    CONTROLLER = _child.thread_controller()
    SHELLS.update(child=_child.make_shell(), trusted=_child.make_shell(_trusted.SetupGlobals()))
    for shell in SHELLS.values():  # its first transform sets IPython's transformers up (~5 ms)
        shell.transform_cell("%matplotlib inline\nx = 1\n")
except Exception:  # noqa: BLE001
    SHELLS.clear()


def _warm_torch() -> None:
    """First calls of common torch operations set up lazily (seeding, module construction and
    initialisation, a convolution, autograd): ~10-40 ms in every process. Done here, on one
    thread (no OpenMP pool is started before the fork), leaving torch's random generator as a
    fresh process has it."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for dtype in (torch.float32, torch.float64):
            model = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8)), torch.nn.Conv1d(1, 2, 3, padding=1),
                                        torch.nn.ReLU(), torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(2, 3)).to(dtype)
            x = torch.linspace(-1, 1, 32, dtype=dtype).reshape(4, 8).requires_grad_(True)
            loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
            torch.autograd.grad(loss, [x, *model.parameters()])
    finally:
        torch.manual_seed(torch.initial_seed())  # the generator as a fresh process has it
        torch.set_num_threads(threads)


try:
    _warm_torch()
except Exception:  # noqa: BLE001
    pass
THREADS = None
try:  # a grading process that keeps one thread per pool then starts none (most do: `Settings.threads`)
    _child.limit_threads(1)
    THREADS = 1
except Exception:  # noqa: BLE001
    pass
_trusted.index_modules()  # the packages' submodules, for pickling the functions a test sends
for _module in (_child, _trusted):  # torch.manual_seed records the stack (source lines) of its caller
    linecache.getlines(_module.__file__)
gc.collect()
gc.freeze()
