"""The configs of data and training, and the names they choose from, declared without torch.

Each field is an :func:`aekit.options.option`: its default, help and choices, from which the command line makes
its flags. They live here, apart from what they configure, so that ``aekit --help``, ``aekit train --help`` and a
mistyped flag answer without loading torch; :mod:`aekit.data.datasets` and :mod:`aekit.training.loop`
read them. (The priors' options are declared the same way, in :mod:`aekit.generation.parts`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError
from .options import image_size as parse_image_size
from .options import option, positive_float, positive_int

LOSSES = ("mse", "bce")
SCHEDULES = ("none", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
GRADIENTS = ("auto", "eager", "autograd")
PRECISIONS = ("fp32", "bf16", "auto")
SGD_MOMENTUM = 0.9
OPTIMIZER_HELP = {  # aekit.training.optim.OPTIMIZERS builds them; their help is here, for the flags
    "adam": "Adam, weight decay as an L2 penalty (the chapter's); fused kernel, fast step",
    "adamw": "AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019); fused kernel",
    "sgd": f"SGD with momentum {SGD_MOMENTUM} (wants a much larger learning rate, e.g. 0.5; slower to learn than Adam)",
}


@dataclass
class DataConfig:
    """Which data to train on; stored in every run so the same data can be loaded again."""

    name: str = option("mnist", "a built-in dataset (mnist, digits) or a file or folder: .npy, .npz, .csv, .parquet, "
                       "a folder of .npy shards or of images (aekit datasets lists them); a .npy, Parquet, shard or "
                       "image folder source over 2 GiB as float32 is streamed from disk", flag="--data",
                       metavar="NAME|PATH")  # fmt: skip
    data_dir: str | None = option(None, "folder searched first for the MNIST files (then $AEKIT_DATA, the bundled copy, "
                                  "the user cache)", metavar="DIR")  # fmt: skip
    test_fraction: float = option(0.2, "share held out for testing when the data has no test split of its own",
                                  parse=positive_float, metavar="X")  # fmt: skip
    split_seed: int = option(0, "seed of that split (fixed, so runs with other training seeds share a test set)",
                             metavar="N")  # fmt: skip
    label_column: str | None = option(None, "CSV or Parquet column holding labels (name or 0-based index), left out "
                                      "of the features", metavar="COLUMN")  # fmt: skip
    image_size: tuple[int, int] | None = option(None, "resize a folder's images to HxW (needed if their sizes differ)",
                                                parse=parse_image_size, metavar="HxW")  # fmt: skip
    limit: int | None = option(None, "train on the first N training examples only (quick experiments)",
                               parse=positive_int, metavar="N")  # fmt: skip
    series: bool = option(False, "--data is one long series: rows are time steps, columns channels (CSV, Parquet, "
                          ".npy of shape (T,) or (T, C)); the model learns windows cut from its first part (the last "
                          "--test-fraction is held out), and aekit score gives one score per row")  # fmt: skip
    window: int | None = option(None, "with --series: steps per window (default: the series' dominant period, from "
                                "its autocorrelation, within 8..512; 100 when it has none)", parse=positive_int,
                                metavar="W")  # fmt: skip


@dataclass
class TrainConfig:
    """How to train; stored in every run's ``config.json``. Defaults are the chapter's.

    Each field is an option with its help (``aekit train --help`` shows them; the CLI makes one flag of each)."""

    epochs: int = option(10, "passes over the training set; with --resume, train to this many", parse=positive_int)
    batch_size: int = option(128, "examples per optimizer step (the global batch under torchrun)", parse=positive_int)
    lr: float = option(1e-3, "the optimizer's (peak) learning rate", parse=positive_float)
    weight_decay: float = option(0.0, "the optimizer's weight decay (an L2 penalty for adam and sgd, decoupled for "
                                 "adamw)")  # fmt: skip
    optimizer: str = option("adam", "; ".join(f"{k}: {v}" for k, v in OPTIMIZER_HELP.items()), tuple(OPTIMIZER_HELP))
    loss: str = option("mse", "reconstruction loss: mean squared error or binary cross-entropy", LOSSES)
    schedule: str = option("none", "learning-rate schedule over all steps", SCHEDULES)
    seed: int = option(0, "seeds the initial weights, the batch order and every random draw")
    device: str = option("auto", "where to train: auto = cuda, then mps, then cpu", DEVICES)
    clip_grad: float | None = option(None, "clip the gradient norm to NORM (default: no clipping)", parse=positive_float,
                                     metavar="NORM")  # fmt: skip
    n_iter_no_change: int | None = option(None, "stop after N epochs in which the monitored error improved by less "
                                          "than --tol (default: train all epochs)", parse=positive_int, metavar="N")
    tol: float = option(1e-4, "the improvement that counts for --n-iter-no-change: of the test MSE per feature, or of "
                        "the train loss without test data", metavar="X")  # fmt: skip
    eval_every: int = option(1, "compute the test error after every K epochs and after the last (the other epochs' "
                             "history rows have no test columns)", parse=positive_int, metavar="K")  # fmt: skip
    gradients: str = option("auto", "auto: hand-derived gradients where aekit.mlpgrad covers the model (fully "
                            "connected, plain or denoising, one process), else autograd; on a GPU, for the plain "
                            "objective with adam and no --clip-grad, the whole step is recorded once as a CUDA graph "
                            "and replayed; eager: hand-derived, never a graph; autograd: always autograd",
                            GRADIENTS)  # fmt: skip
    precision: str = option("fp32", "bf16: bf16 products for the wide layers (both widths >= 256; weights, optimizer, "
                            "loss and checkpoints stay fp32), refused where the CPU has no AMX-BF16 or AVX512-BF16 (a "
                            "GPU: no bf16 units); auto: bf16 where they are and the model has a wide layer, else fp32",
                            PRECISIONS)  # fmt: skip

    def validate(self) -> TrainConfig:
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a positive number")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay={self.weight_decay} must be zero or positive")
        for name, choices in (("optimizer", OPTIMIZER_HELP), ("loss", LOSSES), ("schedule", SCHEDULES),
                              ("device", DEVICES), ("gradients", GRADIENTS), ("precision", PRECISIONS)):  # fmt: skip
            if getattr(self, name) not in choices:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose one of {list(choices)}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**62:
            raise ConfigError(f"seed={self.seed} must be an integer from 0 to 2**62 - 1")
        if self.n_iter_no_change is not None and (not isinstance(self.n_iter_no_change, int) or self.n_iter_no_change < 1):
            raise ConfigError(f"n_iter_no_change={self.n_iter_no_change} must be a positive integer or None")
        if not (self.tol >= 0 and math.isfinite(self.tol)):
            raise ConfigError(f"tol={self.tol} must be zero or positive")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ConfigError(f"eval_every={self.eval_every} must be a positive integer")
        if self.eval_every > 1 and self.n_iter_no_change is not None:
            raise ConfigError(f"n_iter_no_change watches the test error of every epoch; it needs eval_every=1, "
                              f"not {self.eval_every}")  # fmt: skip
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ConfigError(f"clip_grad={self.clip_grad} must be positive")
        return self
