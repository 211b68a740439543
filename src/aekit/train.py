"""One training loop for every model: batches sliced from in-memory tensors, Adam, checkpoints every epoch.

Resuming is exact: the batch order of epoch ``e`` and every random draw inside it come from generators seeded
by ``(seed, e)``, and a mid-epoch checkpoint (Ctrl-C) also stores the RNG state, so a resumed run ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from . import checkpoint
from .data import Data
from .distributed import all_sum, check_identical_weights, rank_and_world
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .models import LOSSES, AutoEncoder

log = logging.getLogger(__name__)

SCHEDULES = ("none", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """How to train; stored in every run's ``config.json``. Defaults are the chapter's."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # examples per optimizer step
    lr: float = 1e-3  # Adam's (peak) learning rate
    weight_decay: float = 0.0  # Adam's L2 penalty
    loss: str = "mse"  # reconstruction loss: "mse" (mean squared error) or "bce" (binary cross-entropy)
    schedule: str = "none"  # learning-rate schedule over all steps: "none", "cosine" or "onecycle"
    seed: int = 0  # seeds the initial weights, the batch order and every random draw
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda" or "mps"
    clip_grad: float | None = None  # clip the gradient norm to this value (None: no clipping)

    def validate(self) -> TrainConfig:
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a positive number")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay={self.weight_decay} must be zero or positive")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {list(DEVICES)}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ConfigError(f"clip_grad={self.clip_grad} must be positive")
        return self


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but is not available; use --device cpu or auto")
    return torch.device(name)


def make_adam(model: nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device: one pass over each tensor per step
    instead of about ten, the same update up to rounding. Falls back to the default implementation."""
    try:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused Adam is missing for this device or this torch
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


class AdamStep:
    """``optimizer.step()`` for fused Adam, calling torch's fused kernel directly once the state exists.

    ``Adam.step`` spends about as long on per-step Python bookkeeping (grouping tensors by device and dtype,
    checks) as the fused kernel itself spends updating this library's small models. With one parameter group
    on one device and dtype, the lists it builds are the same every step, so this builds them once and calls
    the same kernel with the same arguments: the update is bit-for-bit ``Adam.step``'s (tested). Anything
    else (no fused kernel, several groups or dtypes, amsgrad, a torch whose kernel differs) uses ``step()``.
    """

    def __init__(self, optimizer: torch.optim.Adam):
        self.optimizer = optimizer
        self.lists = None  # (params, exp_avgs, exp_avg_sqs, steps), built after the first regular step
        self.fast = hasattr(torch, "_fused_adam_")

    def _eligible(self) -> bool:
        groups = self.optimizer.param_groups
        if len(groups) != 1 or not groups[0].get("fused") or groups[0].get("decoupled_weight_decay"):
            return False
        group = groups[0]
        if group["amsgrad"] or group["maximize"] or group.get("capturable") or group.get("differentiable"):
            return False
        params = group["params"]
        return len({(p.device, p.dtype) for p in params}) == 1 and all(p in self.optimizer.state for p in params)

    def __call__(self) -> None:
        if not self.fast or self.lists is None:
            self.optimizer.step()
            if self.fast and self._eligible():
                params = self.optimizer.param_groups[0]["params"]
                state = [self.optimizer.state[p] for p in params]
                self.lists = (params, [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
                              [s["step"] for s in state])  # fmt: skip
            return
        params, exp_avgs, exp_avg_sqs, steps = self.lists
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        try:
            torch._fused_adam_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                               amsgrad=False, maximize=False)  # fmt: skip
        except (TypeError, RuntimeError):  # this torch's kernel takes other arguments: use the public step
            torch._foreach_sub_(steps, 1)
            self.fast, self.lists = False, None
            self.optimizer.step()


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at global ``step``: a pure function of the step, so resuming needs no scheduler state."""
    t = step / max(1, total_steps)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * t))
    if config.schedule == "onecycle":  # linear warm-up over the first 10%, then cosine down to ~0
        warm = 0.1
        if t < warm:
            return config.lr * (0.04 + 0.96 * t / warm)
        return config.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    return config.lr


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


@torch.no_grad()
def squared_errors(model: AutoEncoder, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Per-example squared error summed over all features, ``(N,)`` float64, computed in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        diff = model(xb).sub_(xb)  # in place, squared in place: no float64 copy of the whole batch
        out.append(diff.reshape(len(xb), -1).square_().sum(1).double().cpu())
    model.train(was_training)
    return torch.cat(out)


class _StopFlag:
    """Turns SIGINT into a flag the loop checks after each step, so Ctrl-C saves a clean checkpoint."""

    def __init__(self):
        self.raised = False
        self.previous = None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave SIGINT alone
            self.previous = None
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint; ``str()`` says how to resume."""


class Objective(nn.Module):
    """The model's loss as a module's forward, so DistributedDataParallel can wrap it and sync gradients."""

    def __init__(self, model: AutoEncoder, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.loss(x, self.kind)


def train(
    model: AutoEncoder,
    data: Data,
    config: TrainConfig,
    run: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` on ``data`` and return the history: one plain dict per epoch.

    Under torchrun, each process trains on its shard of every epoch's permutation with DistributedDataParallel
    (``batch_size`` is the global batch, split evenly); losses and metrics are summed over processes before they
    are logged or used, and only rank 0 writes to ``run``.

    Parameters
    ----------
    model : AutoEncoder
        Any model of :data:`aekit.models.MODELS`; trained in place.
    data : Data
        Training and test tensors in model space (see :func:`aekit.data.load`).
    config : TrainConfig
        Optimizer, schedule, epochs, seed and device.
    run : path, optional
        A run directory to checkpoint into after every epoch (``config.json`` is the caller's to write).
    resume : bool
        Continue from ``run``'s checkpoint instead of starting afresh.
    progress : bool
        Show a progress bar per epoch.
    """
    config.validate()
    rank, world = rank_and_world()
    device = pick_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if config.batch_size % world:
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {world} processes")
    model.to(device).train()
    x_train = data.x_train.to(device)
    n, batch = len(x_train), config.batch_size // world
    # Each process's share of an epoch's shuffled indices (all of them in a single process).
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    steps_per_epoch = math.ceil(len(sampler) / batch)
    total_steps = steps_per_epoch * config.epochs
    optimizer = make_adam(model, config)
    adam_step = AdamStep(optimizer)
    objective = Objective(model, config.loss)
    step_fn = DistributedDataParallel(objective) if world > 1 else objective
    history: list[dict] = []
    start_epoch, start_step, sums = 0, 0, {}
    run = Path(run) if run is not None else None
    writer = run is not None and rank == 0
    if resume:
        if run is None or not (run / checkpoint.CHECKPOINT).is_file():
            log.info("no checkpoint in %s yet: starting from epoch 1", run)
        else:
            state, _ = checkpoint.load_checkpoint(run, model, optimizer)
            history, start_epoch, start_step = state["history"], state["epoch"], state["step"]
            sums = state.get("sums", {})
            if start_step and state.get("world", 1) != world:
                raise CheckpointError(f"{run} stopped mid-epoch with {state.get('world', 1)} processes; resume it "
                                      f"with as many (not {world})")  # fmt: skip
            if start_epoch >= config.epochs:
                log.info("%s already finished %d epochs", run, start_epoch)

    if writer:
        run.mkdir(parents=True, exist_ok=True)

    def save(epoch: int, step: int, sums: dict) -> None:
        if writer:
            state = {"epoch": epoch, "step": step, "history": history, "sums": sums, "world": world}
            checkpoint.save_checkpoint(run, model, optimizer, data.scaler, state)

    with _StopFlag() as stop:
        for epoch in range(start_epoch, config.epochs):
            began = time.perf_counter()
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), device=device)
            first_step = start_step if epoch == start_epoch else 0
            if first_step == 0:
                torch.manual_seed(epoch_seed(config.seed, epoch) + rank)  # noise, sampling: one stream per process
                sums = {}
            # Running sums of the loss and its terms, weighted by batch size (plain floats: loss.item() already syncs).
            totals = {k: v for k, v in sums.items() if k != "_seen"}
            seen = int(sums.get("_seen", 0))
            bar = tqdm(range(first_step, steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not progress or rank != 0, leave=False, unit="step", dynamic_ncols=True)  # fmt: skip
            for step in bar:
                lr = learning_rate(config, epoch * steps_per_epoch + step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                xb = x_train.index_select(0, order[step * batch : (step + 1) * batch])
                loss, terms = step_fn(xb)
                local = loss.item()
                value, stopping = local, stop.raised
                if world > 1:  # every process stops at the same step, for NaN or for Ctrl-C
                    total, flags = all_sum([value, float(stop.raised)], device)
                    value, stopping = total / world, flags > 0
                if not math.isfinite(value):
                    where = f" (last good checkpoint: {run / checkpoint.CHECKPOINT})" if run else ""
                    raise TrainingDiverged(
                        f"loss became {value} at epoch {epoch + 1}, step {step + 1}; try a lower learning rate "
                        f"than {config.lr:g} or --clip-grad{where}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                adam_step()
                for name, term in {"loss": local, **{k: t.item() for k, t in terms.items()}}.items():
                    totals[name] = totals.get(name, 0.0) + term * len(xb)
                seen += len(xb)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                if stopping:
                    stop.raised = True
                    if run is None:
                        raise KeyboardInterrupt
                    sums = totals | {"_seen": seen}
                    if step + 1 == steps_per_epoch:  # finished the epoch anyway: record it properly
                        break
                    save(epoch, step + 1, sums)
                    raise Interrupted(
                        f"interrupted at epoch {epoch + 1}, step {step + 1}; checkpoint saved, continue with: "
                        f"aekit train --resume {run}"
                    )
            bar.close()
            names = sorted(totals)
            *sums_all, seen_all = all_sum([totals[k] for k in names] + [float(seen)], device)
            train_terms = {k: v / seen_all for k, v in zip(names, sums_all)}
            errors = squared_errors(model, data.x_test[rank::world])
            sse, count = all_sum([float(errors.sum()), float(len(errors))], device)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_terms.pop("loss"),
                "test_mse_per_pixel": sse / count / math.prod(data.input_shape),
                "test_sse_per_image": sse / count,
                "seconds": round(time.perf_counter() - began, 3),
            }
            row.update({f"train_{k}": v for k, v in train_terms.items()})
            history.append(row)
            if rank == 0:
                log.info(
                    "epoch %d/%d  train loss %.5f  test MSE/pixel %.5f  test SSE/image %.3f  %.1fs",
                    row["epoch"], config.epochs, row["train_loss"], row["test_mse_per_pixel"],
                    row["test_sse_per_image"], row["seconds"],
                )  # fmt: skip
            if writer:
                save(epoch + 1, 0, {})
                checkpoint.save_model(run, model, data.scaler, epoch + 1)
                checkpoint.write_history(run, history)
            if stop.raised:
                raise Interrupted(
                    f"interrupted after epoch {epoch + 1}; checkpoint saved, continue with: aekit train --resume {run}"
                )
    if world > 1:
        check_identical_weights(model)
    return history


def prepare_run_dir(run: Path, resume: bool, overwrite: bool, write: bool = True) -> None:
    """Refuse to train into an existing run unless told to resume it or overwrite it; with ``write``, clear
    the old run's files (``overwrite``) and create the folder."""
    if resume:
        if not (run / checkpoint.CONFIG).is_file():
            raise CheckpointError(f"{run}: nothing to resume (no {checkpoint.CONFIG}); start it without --resume")
        return
    if run.exists() and any(run.iterdir()) and not overwrite:
        raise CheckpointError(f"{run} already holds a run; pass --resume to continue it or --overwrite to replace it")
    if write:
        for name in (checkpoint.CONFIG, checkpoint.MODEL, checkpoint.CHECKPOINT, checkpoint.HISTORY,
                     checkpoint.METRICS):  # fmt: skip
            (run / name).unlink(missing_ok=True)
        run.mkdir(parents=True, exist_ok=True)
