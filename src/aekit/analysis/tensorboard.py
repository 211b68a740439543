"""TensorBoard logs of a training run, written with PyTorch's own ``torch.utils.tensorboard.SummaryWriter``.

Per epoch (the step is the epoch, from 1): every column of the history row as a scalar (``train_loss``, the test
error, each objective's terms ``train_*``, ``seconds``), the learning rate (``lr``) and, for images, a grid of
eight test images above their reconstructions (``reconstructions``). At the end, the codes of up to 1,000 test
examples as a projector embedding (``codes``) with their labels and, for images, sprite thumbnails, so that
``tensorboard --logdir DIR`` shows the latent map. A resumed run continues the same curves: its writer purges
every event from its first epoch on, so an epoch logged before a kill is not logged twice.

Needs the ``tensorboard`` extra (``pip install 'aekit[tensorboard]'``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..configs import TrainConfig
from ..core.fitted import encode, reconstruct
from ..core.space import Data, is_image_data
from ..errors import AekitError
from ..model.autoencoder import AutoEncoder
from ..training.loop import learning_rate

log = logging.getLogger(__name__)

GRID = 8  # test images in the per-epoch reconstruction grid
EMBEDDED = 1000  # test codes in the projector embedding


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package
        raise AekitError("--tensorboard needs the 'tensorboard' extra: pip install 'aekit[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLog:
    """``on_epoch`` for :func:`aekit.training.loop.train` that logs each history row to ``log_dir``; :meth:`close` adds the
    projector embedding. The writer opens with the first row, purging that epoch and later ones from earlier runs."""

    def __init__(self, log_dir: str | Path, model: AutoEncoder, data: Data, config: TrainConfig):
        self.SummaryWriter = _writer_class()  # a missing extra is one line before any training
        self.log_dir, self.model, self.data, self.config = Path(log_dir), model, data, config
        self.writer, self.last_epoch = None, 0
        self.images = is_image_data(tuple(data.x_test.shape[1:]))

    def __call__(self, row: dict) -> None:
        epoch = row["epoch"]
        if self.writer is None:
            self.writer = self.SummaryWriter(str(self.log_dir), purge_step=epoch)
            log.info("TensorBoard: logging to %s (tensorboard --logdir %s)", self.log_dir, self.log_dir)
        for name, value in row.items():
            if name != "epoch":
                self.writer.add_scalar(name, value, epoch)
        self.writer.add_scalar("lr", learning_rate(self.config, epoch, self.config.epochs), epoch)
        if self.images and len(self.data.x_test):
            self.writer.add_image("reconstructions", self.reconstruction_grid(), epoch)
        self.writer.flush()
        self.last_epoch = epoch

    def reconstruction_grid(self) -> torch.Tensor:
        """``GRID`` test images (top row) above their reconstructions: one ``(C, 2H, GRID * W)`` image in [0, 1]."""
        x = self.data.x_test[:GRID]
        pair = torch.stack([x, reconstruct(self.model, x).clamp(0, 1)])  # (2, n, C, H, W)
        _, n, c, h, w = pair.shape
        return pair.permute(2, 0, 3, 1, 4).reshape(c, 2 * h, n * w)

    def close(self) -> None:
        """Write the projector embedding of the test codes (labels, thumbnails) and close the files."""
        if self.writer is None:  # nothing was trained in this call (a finished run resumed)
            self.writer = self.SummaryWriter(str(self.log_dir))
        x = self.data.x_test[:EMBEDDED]
        if len(x):
            labels = None if self.data.y_test is None else self.data.y_test[:EMBEDDED].tolist()
            thumbnails = x.clamp(0, 1) if self.images else None
            self.writer.add_embedding(encode(self.model, x), metadata=labels, label_img=thumbnails,
                                      global_step=self.last_epoch, tag="codes")  # fmt: skip
        self.writer.close()
