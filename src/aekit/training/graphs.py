"""A fixed-shape training step recorded once as a CUDA graph and replayed: one launch per step, not a few dozen.

On a GPU the chapter's step is a few dozen small kernels (the products, the activations and their gradients, the
fused Adam update), and launching them from Python takes longer than running them: on one H100 aekit trained at
0.35-0.43 s/epoch, 469 steps of launch overhead. A CUDA graph records the kernels of one step with the addresses
of their tensors and replays them all with one launch (``torch.cuda.CUDAGraph``). That asks of the step what
:class:`GraphedStep` arranges: the same tensors every time (the batch is copied into a static input, the loss read
from a static output and cloned), the same shape (a batch of another size, such as an epoch's last and shorter one,
runs eagerly), no host synchronisation and nothing random inside it, the learning rate read from a device tensor
(refilled when the schedule changes it), and a few eager warm-up steps first, on a side stream, as the CUDA notes
of PyTorch ask. The graph replays the kernels the eager step runs, on the same numbers, with one difference: the
fused Adam kernel reads a tensor learning rate as a float32 (``lr_ptr`` in ``fused_adam_utils.cuh``), where it takes
a float argument as a double. So every step of a graphed run, its eager ones too, uses the learning rate rounded to
float32 (a relative change under 6e-8): a graphed run then resumes exactly, its first steps after a resume eager.

Which steps qualify is decided by the caller (:mod:`aekit.train`: the hand-derived step of :mod:`aekit.mlpgrad`
without random noise, with fused Adam, one process, no gradient clipping); if recording fails, the step stays eager
for the rest of the run, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

WARMUP = 3  # eager steps before recording (lazy initialisation: cuBLAS workspaces, the optimizer's state)


def cuda_capture(record: Callable[[], None]) -> Callable[[], None]:
    """Record ``record()``'s kernels into a CUDA graph (nothing runs yet); returns the graph's ``replay``."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        record()
    return graph.replay


class GraphedStep:
    """``step(x, lr) -> (loss, {})``: the whole training step (gradients and the optimizer's update) of batch ``x``.

    ``eager(x, lr)`` runs one step eagerly with learning rate ``lr`` and returns ``(loss, terms)``;
    ``body(x, lr, loss)`` is the same step for recording: it reads the batch from ``x`` and the learning rate from the
    0-d tensor ``lr``, and writes the loss into ``loss``. Batches of ``rows`` rows replay the graph once it is
    recorded; the others, and the first :data:`WARMUP` steps, run eagerly. Recording is :func:`cuda_capture`'s (the
    tests put in one that returns ``record`` itself, which replays eagerly, to check the bookkeeping on a CPU).
    """

    def __init__(self, eager: Callable, body: Callable, rows: int, device: torch.device):
        self.eager, self.body, self.rows, self.device = eager, body, rows, device
        self.replay: Callable[[], None] | None = None
        self.warm, self.failed = 0, False
        self.x = self.lr = self.loss = self.lr_value = None

    def __call__(self, x: torch.Tensor, lr: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lr = float(np.float32(lr))  # as the kernel reads the tensor (see the module's note); no tensor per step
        if len(x) != self.rows or self.failed:
            return self.eager(x, lr)
        if self.replay is None:
            if self.warm < WARMUP:
                self.warm += 1
                return self.warm_up(x, lr)
            if not self.record(x, lr):
                return self.eager(x, lr)
        self.x.copy_(x)
        if lr != self.lr_value:
            self.lr.fill_(lr)
            self.lr_value = lr
        self.replay()
        return self.loss.clone(), {}

    def warm_up(self, x: torch.Tensor, lr: float):
        if self.device.type != "cuda":
            return self.eager(x, lr)
        side, main = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self.eager(x, lr)
        main.wait_stream(side)
        return out

    def record(self, x: torch.Tensor, lr: float) -> bool:
        """Make the static tensors and record the step into them; False (and eager from now on) if that fails."""
        self.x, self.loss = torch.empty_like(x), torch.zeros((), device=x.device)
        self.lr, self.lr_value = torch.full((), lr, dtype=torch.float32, device=x.device), lr
        try:
            self.replay = cuda_capture(lambda: self.body(self.x, self.lr, self.loss))
        except RuntimeError as error:
            self.failed, self.replay = True, None
            log.warning("training step: recording it as a CUDA graph failed (%s); it runs eagerly",
                        str(error).splitlines()[0])  # fmt: skip
            return False
        log.info("training step: replayed as a CUDA graph (batches of %d rows; others run eagerly)", self.rows)
        return True
