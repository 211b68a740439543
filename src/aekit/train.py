"""One training loop for every model: batches sliced from in-memory tensors, Adam, checkpoints every epoch.

Resuming is exact: the batch order of epoch ``e`` and every random draw inside it come from generators seeded
by ``(seed, e)``, and a mid-epoch checkpoint (Ctrl-C) also stores the RNG state, so a resumed run ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from .checkpoint import RunDir, TrainState
from .data import Data
from .distributed import all_sum, check_identical_weights, rank_and_world
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .mlpgrad import MLPStep, layers_of, reconstruct_rows
from .models import LOSSES, AutoEncoder
from .stream import Streamed, lanes_for

log = logging.getLogger(__name__)

SCHEDULES = ("none", "cosine", "onecycle")
LOOK_EVERY = 50  # steps between looks at the loss (a host round trip): a NaN is caught at most this many steps late
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
    n_iter_no_change: int | None = None  # stop after this many epochs without improving by tol (None: never)
    tol: float = 1e-4  # the improvement that counts: of the test MSE per feature, or of the train loss without test data
    eval_every: int = 1  # compute the test error after every this many epochs (and always after the last)

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

    Why a private call: measured with torch 2.13 on 2 CPU cores (AMD EPYC), the chapter's model on MNIST, six
    interleaved rounds of 300 steps, a whole training step takes 5.9 ms with this call and 6.4 ms with the public
    ``Adam.step`` (median): it saves 7% of the step. ``torch._fused_adam_`` is private; if it is missing or its
    signature changes, the first call falls back to ``Adam.step`` for good.
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
def squared_errors(model: AutoEncoder, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Per-example squared error summed over all features, ``(N,)`` float64, computed in eval mode.

    In batches of 1,024 rows: on 2 CPU cores the chapter's model scores MNIST's 10,000 test images ~15% faster
    than in batches of 4,096 (whose activations spill out of the cache), the per-epoch evaluation included."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chain = layers_of(model) if type(model) is AutoEncoder else None  # fully connected: no module overhead
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        rows = xb.reshape(len(xb), -1)
        diff = (reconstruct_rows(model, chain, rows) if chain is not None else model(xb).reshape(rows.shape)).sub_(rows)
        out.append(torch.linalg.vecdot(diff, diff).double().cpu())  # no float64 copy of the whole batch
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


class LossModule(nn.Module):
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
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` on ``data`` and return the history: one plain dict per epoch.

    Under torchrun, each process trains on its shard of every epoch's permutation with DistributedDataParallel
    (``batch_size`` is the global batch, split evenly); losses and metrics are summed over processes before they
    are logged or used, and only rank 0 writes to ``run``.

    Parameters
    ----------
    model : AutoEncoder
        Any body and objective; trained in place.
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
    on_epoch : callable, optional
        Called with each epoch's history row once the epoch is finished and its checkpoint written (in every
        process under torchrun): to watch a run from a notebook, plot as it goes, or time epochs from outside.
    """
    config.validate()
    rank, world = rank_and_world()
    device = training_device(config.device, world)
    if config.batch_size % world:
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {world} processes")
    model.to(device).train()
    x_train, batch = data.x_train.to(device), config.batch_size // world
    # Each process's share of an epoch's shuffled indices (all of them in a single process).
    sampler = DistributedSampler(range(len(x_train)), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    steps_per_epoch = math.ceil(len(sampler) / batch)
    streamed = isinstance(data, Streamed)  # read from disk chunk by chunk; x_train is only its in-memory sample
    if streamed:
        steps_per_epoch = data.steps_per_epoch(config.batch_size, world)
        if steps_per_epoch < 1:
            raise ConfigError(f"batch_size={config.batch_size} is larger than the {data.n_train} training rows")
    optimizer = make_adam(model, config)
    adam_step = AdamStep(optimizer)
    loss_fn = DistributedDataParallel(LossModule(model, config.loss)) if world > 1 else LossModule(model, config.loss)
    gradients = gradient_step(model, loss_fn, optimizer, config.loss, world)
    rundir = RunDir(run) if run is not None else None
    writer = rundir is not None and rank == 0
    state = resume_state(rundir, model, optimizer, config, world) if resume else TrainState(world=world)
    if writer:
        rundir.path.mkdir(parents=True, exist_ok=True)

    with _StopFlag() as stop, deterministic_cudnn(device):
        for epoch in range(state.epoch, config.epochs):
            began = time.perf_counter()
            epoch_steps = steps_per_epoch
            if streamed:  # full batches only, as many on every process; a resumed epoch skips what it did
                source = data.batches(config.seed, epoch, batch, rank, world, device)
                if world > 1 and epoch == state.epoch:
                    lanes = lanes_for(config.batch_size, world)
                    same = lanes == lanes_for(config.batch_size, 1)
                    log.info("process %d reads lanes %s of the %d lanes of every chunk (%s)", rank,
                             list(range(rank, lanes, world)), lanes, "together the batches one process makes" if same
                             else "batches not those of one process: the processes do not divide the lanes")  # fmt: skip
                for _ in range(state.step):
                    next(source)
            else:
                sampler.set_epoch(epoch)
                order = epoch_order(sampler, len(x_train), config.seed, epoch, world).to(device)
            if state.step == 0:  # a fresh epoch (a resumed mid-epoch one has its RNG state from the checkpoint)
                torch.manual_seed(epoch_seed(config.seed, epoch) + rank)  # noise, sampling: one stream per process
            bar = tqdm(range(state.step, epoch_steps), desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not progress or rank != 0, leave=False, unit="step", dynamic_ncols=True)  # fmt: skip
            pending: list[tuple] = []  # (step, batch size, loss, terms) of the steps not looked at yet
            for step in bar:
                lr = learning_rate(config, epoch * steps_per_epoch + step, steps_per_epoch * config.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                xb = next(source) if streamed else x_train.index_select(0, order[step * batch : (step + 1) * batch])
                loss, terms = gradients(xb)
                pending.append((step, len(xb), loss, terms))
                if config.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                adam_step()
                # Look at the losses (one host round trip) every LOOK_EVERY steps, at the end of the epoch, and on
                # Ctrl-C; under torchrun every process looks at the same steps, and a Ctrl-C waits for the next look.
                last = step + 1 == epoch_steps
                if not (last or len(pending) == LOOK_EVERY or (stop.raised and world == 1)):
                    continue
                value, stopping = settle(pending, state, stop.raised, epoch, config, rundir, device)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                if stopping:
                    stop.raised = True
                    if not last:  # mid-epoch: save this step and say how to resume
                        state.step = step + 1
                        raise interrupted(state, model, optimizer, data, rundir if writer else None, run)
            bar.close()
            evaluate = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            row = epoch_row(model, data, state, epoch, config.epochs, began, device, evaluate)
            monitored = row.get("test_mse_per_pixel", row["train_loss"])
            improved = monitored < state.best - config.tol
            state = TrainState(epoch + 1, 0, {}, 0, [*state.history, row], world, min(state.best, monitored),
                               0 if improved else state.stale + 1)  # fmt: skip
            if writer:
                rundir.save_epoch(model, optimizer, data.scaler, state)
            if on_epoch is not None:
                on_epoch(row)
            if stop.raised:
                raise interrupted(state, model, optimizer, data, None, run)
            if config.n_iter_no_change is not None and state.stale >= config.n_iter_no_change:
                log.info("stopping after epoch %d: %d epochs without improving by %g", epoch + 1, state.stale, config.tol)
                break
    if world > 1:
        check_identical_weights(model)
    return state.history


def epoch_order(sampler: DistributedSampler, n: int, seed: int, epoch: int, world: int) -> torch.Tensor:
    """This process's indices for ``epoch``: DistributedSampler's shuffle, which one process gets straight from
    ``randperm`` (the same permutation, without a list of 60,000 Python ints)."""
    if world == 1:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return torch.tensor(list(sampler))


def gradient_step(model: AutoEncoder, loss_fn: nn.Module, optimizer, kind: str, world: int):
    """``step(x) -> (loss, terms)``, detached, with the batch's gradient left in every ``.grad``: hand-derived for
    the fully connected models :mod:`aekit.mlpgrad` covers (one process, the library's own class), else autograd."""
    manual = MLPStep.of(model, kind) if world == 1 and type(model) is AutoEncoder else None
    if manual is not None:
        log.debug("training step: hand-derived gradients (aekit.mlpgrad)")
        return manual

    def autograd_step(xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, terms = loss_fn(xb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), {k: t.detach() for k, t in terms.items()}

    return autograd_step


def settle(pending: list[tuple], state: TrainState, stop_raised: bool, epoch: int, config: TrainConfig,
           rundir: RunDir | None, device) -> tuple[float, bool]:
    """Read the losses of the steps in ``pending`` (one host round trip), add them to ``state`` and empty it.

    Returns the last step's loss (averaged over processes) and whether to stop (any process saw Ctrl-C). Raises
    the divergence error naming the first step whose loss was not finite.
    """
    names = sorted(pending[0][3])
    rows = torch.stack([torch.stack([loss, *(terms[k] for k in names)]) for _, _, loss, terms in pending]).tolist()
    values, stopping = [row[0] for row in rows], stop_raised
    _, world = rank_and_world()
    if world > 1:  # the mean over processes of each step's loss, and whether any process saw Ctrl-C
        *totals, flags = all_sum([*values, float(stop_raised)], device)
        values, stopping = [t / world for t in totals], flags > 0
    for (step, count, _, _), value, row in zip(pending, values, rows):
        if not math.isfinite(value):
            raise diverged(value, epoch, step, config, rundir)
        state.add({"loss": row[0], **dict(zip(names, row[1:]))}, count)
    pending.clear()
    return values[-1], stopping


def deterministic_cudnn(device: torch.device):
    """On CUDA, cuDNN's deterministic algorithms (no autotuning) while training, so that a resumed run ends with
    the same weights as an uninterrupted one there too; torch's global settings are restored afterwards."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=False, deterministic=True, allow_tf32=cudnn.allow_tf32)


def training_device(name: str, world: int) -> torch.device:
    """The device to train on; under torchrun with GPUs, the GPU of this process's ``LOCAL_RANK``."""
    device = pick_device(name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def resume_state(rundir: RunDir | None, model, optimizer, config: TrainConfig, world: int) -> TrainState:
    """Load the run's checkpoint into ``model`` and ``optimizer``; a run without one starts from epoch 1."""
    if rundir is None or not rundir.has(RunDir.CHECKPOINT):
        log.info("no checkpoint in %s yet: starting from epoch 1", rundir)
        return TrainState(world=world)
    state, _ = rundir.load_checkpoint(model, optimizer)
    if state.step and state.world != world:
        raise CheckpointError(f"{rundir} stopped mid-epoch with {state.world} processes; resume it with as many "
                              f"(not {world})")  # fmt: skip
    if state.epoch >= config.epochs:
        log.info("%s already finished %d epochs", rundir, state.epoch)
    state.world = world
    return state


def epoch_row(model: AutoEncoder, data: Data, state: TrainState, epoch: int, epochs: int, began: float, device,
              evaluate: bool = True) -> dict:
    """The history row of a finished epoch: training terms and (if ``evaluate``) test error, summed over all
    processes, and the epoch's seconds since ``began`` (``time.perf_counter()``), its evaluation included."""
    rank, world = rank_and_world()
    names = sorted(state.sums)
    *sums, seen = all_sum([state.sums[k] for k in names] + [float(state.seen)], device)
    train_terms = {k: v / seen for k, v in zip(names, sums)}
    row = {"epoch": epoch + 1, "train_loss": train_terms.pop("loss")}
    if evaluate and len(data.x_test):  # data without a test split (an estimator without a validation split) has no test error
        errors = squared_errors(model, data.x_test[rank::world])
        sse, count = all_sum([float(errors.sum()), float(len(errors))], device)
        row.update(test_mse_per_pixel=sse / count / math.prod(data.input_shape), test_sse_per_image=sse / count)
    row["seconds"] = round(time.perf_counter() - began, 3)
    row.update({f"train_{k}": v for k, v in train_terms.items()})
    if rank == 0:
        test = f"  test MSE/pixel {row['test_mse_per_pixel']:.5f}  test SSE/image {row['test_sse_per_image']:.3f}" \
            if "test_mse_per_pixel" in row else ""  # fmt: skip
        log.info("epoch %d/%d  train loss %.5f%s  %.1fs", row["epoch"], epochs, row["train_loss"], test, row["seconds"])
    return row


def diverged(value: float, epoch: int, step: int, config: TrainConfig, rundir: RunDir | None) -> TrainingDiverged:
    """The divergence error; its ``event`` says what happened without naming files, for callers that move them."""
    event = (f"loss became {value} at epoch {epoch + 1}, step {step + 1}; try a lower learning rate than "
             f"{config.lr:g} or --clip-grad")
    where = f" (last good checkpoint: {rundir / RunDir.CHECKPOINT})" if rundir and rundir.has(RunDir.CHECKPOINT) else ""
    err = TrainingDiverged(event + where)
    err.event = event
    return err


def interrupted(state: TrainState, model, optimizer, data: Data, rundir: RunDir | None, run) -> BaseException:
    """The exception for a Ctrl-C: a mid-epoch stop first saves its checkpoint (``rundir``, rank 0 only)."""
    if run is None:
        return KeyboardInterrupt()
    if rundir is not None:
        rundir.save_checkpoint(model, optimizer, data.scaler, state)
    where = f"at epoch {state.epoch + 1}, step {state.step}" if state.step else f"after epoch {state.epoch}"
    event = f"interrupted {where}"
    err = Interrupted(f"{event}; checkpoint saved, continue with: aekit train --resume {run}")
    err.event = event  # what happened, without the resume hint (a discarded --overwrite has nothing to resume)
    return err
