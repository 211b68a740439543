"""One training loop for every model: batches sliced from in-memory tensors (or streamed), an optimizer from the
registry, and a saver that checkpoints every epoch.

The loop never sees a file name: :func:`train` takes ``checkpoints``, anything with the :class:`Checkpoints`
methods (a run directory's is :class:`aekit.run.rundir.RunCheckpoints`; a test's can hold them in memory). What
happened when training stops early is told by the exceptions' fields (:class:`Interrupted`,
:class:`aekit.errors.TrainingDiverged`); the runs layer adds the sentences that name files.

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
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from ..configs import TrainConfig
from ..core.space import Data
from ..data.stream import Streamed, lanes_for
from ..errors import CheckpointError, ConfigError, TrainingDiverged
from ..model.autoencoder import AutoEncoder
from ..progress import bar as progress_bar
from .distributed import all_sum, check_identical_weights, rank_and_world
from .graphs import GraphedStep
from .mlpgrad import MLPStep, chain_of, reconstruct_rows
from .optim import AdamStep, make_optimizer, step_function
from .precision import autocast_wide_layers, resolve
from .threads import Threads

log = logging.getLogger(__name__)

LOOK_EVERY = 50  # steps between looks at the loss (a host round trip): a NaN is caught at most this many steps late
GRAPHED_DEVICES = ("cuda",)  # device types on which the hand-derived step is recorded as a CUDA graph


@dataclass
class TrainState:
    """Where training stands: what a checkpoint stores besides the weights, the optimizer and the RNG."""

    epoch: int = 0  # finished epochs
    step: int = 0  # finished steps of the current epoch (not 0 only after a Ctrl-C mid-epoch)
    sums: dict[str, float] = field(default_factory=dict)  # this epoch's loss terms summed, weighted by batch size
    seen: int = 0  # examples behind ``sums``
    history: list[dict] = field(default_factory=list)  # one row per finished epoch
    world: int = 1  # processes that trained it (a mid-epoch stop resumes with as many)
    best: float = math.inf  # the lowest monitored error so far (for n_iter_no_change)
    stale: int = 0  # epochs since it last improved by tol

    def add(self, terms: dict[str, float], count: int) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * count
        self.seen += count

    @classmethod
    def from_json(cls, raw: dict, where: str) -> TrainState:
        """Read the stored state (version 1 kept ``seen`` inside ``sums`` as ``"_seen"``)."""
        try:
            sums = {k: float(v) for k, v in raw.get("sums", {}).items()}
            seen = int(raw.get("seen", sums.pop("_seen", 0)))
            sums.pop("_seen", None)
            state = cls(int(raw["epoch"]), int(raw["step"]), sums, seen, list(raw["history"]), int(raw.get("world", 1)),
                        float(raw.get("best", math.inf)), int(raw.get("stale", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{where}: checkpoint progress is ill-typed ({err!r})") from None
        if state.epoch < 0 or state.step < 0 or state.seen < 0 or state.world < 1:
            raise CheckpointError(f"{where}: checkpoint progress is out of range ({raw!r:.200})")
        return state


class Checkpoints(Protocol):
    """Where the loop keeps its checkpoints (rank 0 saves, every process loads).

    ``load`` restores the model, the optimizer and the RNG from the last checkpoint and returns its state (None when
    there is none yet); ``save_epoch`` runs after each finished epoch, ``save_step`` when training stops mid-epoch.
    """

    def load(self, model: AutoEncoder, optimizer: torch.optim.Optimizer) -> TrainState | None: ...

    def save_epoch(self, model: AutoEncoder, optimizer: torch.optim.Optimizer, state: TrainState) -> None: ...

    def save_step(self, model: AutoEncoder, optimizer: torch.optim.Optimizer, state: TrainState) -> None: ...


class Interrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM (``signum``) after its checkpoint was saved: ``state`` is where it
    stopped; ``note`` is what the caller adds (how to resume). Raised only when training has ``checkpoints``;
    without, the signal is a KeyboardInterrupt."""

    def __init__(self, state: TrainState, note: str = "", signum: int = signal.SIGINT):
        super().__init__(state, note, signum)
        self.state, self.note, self.signum = state, note, signum

    @property
    def event(self) -> str:
        """What happened, naming no file."""
        state = self.state
        how = "interrupted" if self.signum == signal.SIGINT else f"stopped by {signal.Signals(self.signum).name}"
        return (f"{how} at epoch {state.epoch + 1}, step {state.step}" if state.step else
                f"{how} after epoch {state.epoch}")  # fmt: skip

    def __str__(self) -> str:
        return self.event + self.note


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
    """Per-example squared error summed over all (observed: not NaN) features, ``(N,)`` float64, in eval mode.

    In batches of 1,024 rows: on 2 CPU cores the chapter's model scores MNIST's 10,000 test images ~15% faster
    than in batches of 4,096 (whose activations spill out of the cache), the per-epoch evaluation included."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chain = chain_of(model)  # fully connected: no module overhead
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        rows = xb.reshape(len(xb), -1)
        diff = (reconstruct_rows(model, chain, rows) if chain is not None else model(xb).reshape(rows.shape)).sub_(rows)
        diff.nan_to_num_(0.0, math.inf, -math.inf)  # a missing cell (NaN) adds no error: only observed cells are compared
        out.append(torch.linalg.vecdot(diff, diff).double().cpu())  # no float64 copy of the whole batch
    model.train(was_training)
    return torch.cat(out)


class _StopFlag:
    """Turns SIGINT (Ctrl-C) and SIGTERM (what Slurm, Kubernetes and most schedulers send before they kill a job)
    into a flag the loop checks after each step, so that either saves a clean checkpoint of the step it stopped at.
    ``signum`` says which came first; a second signal of either kind stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised, self.signum = False, signal.SIGINT
        self.previous: dict = {}

    def __enter__(self):
        try:
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: leave the signals alone
            self.previous = {}
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second signal stops at once
            raise KeyboardInterrupt
        self.raised, self.signum = True, signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class LossModule(nn.Module):
    """The model's loss as a module's forward, so DistributedDataParallel can wrap it and sync gradients."""

    def __init__(self, model: AutoEncoder, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.loss(x, self.kind)


def train(
    model: AutoEncoder,
    data: Data | Streamed,
    config: TrainConfig,
    *,
    checkpoints: Checkpoints | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` on ``data`` and return the history: one plain dict per epoch.

    Under torchrun, each process trains on its shard of every epoch's permutation with DistributedDataParallel
    (``batch_size`` is the global batch, split evenly); losses and metrics are summed over processes before they
    are logged or used, and only rank 0 saves.

    Parameters
    ----------
    model : AutoEncoder
        Any body and objective; trained in place.
    data : Data or Streamed
        Training and test tensors in model space (see :func:`aekit.data.datasets.load`), or a streamed source.
    config : TrainConfig
        Optimizer, schedule, epochs, seed and device.
    checkpoints : Checkpoints, optional
        Where to save after every epoch (and on Ctrl-C), and what ``resume`` loads.
    resume : bool
        Continue from the last checkpoint instead of starting afresh.
    progress : bool
        Show a progress bar per epoch.
    on_epoch : callable, optional
        Called with each epoch's history row once the epoch is finished and its checkpoint saved (in every
        process under torchrun): to watch a run from a notebook, plot as it goes, or time epochs from outside.

    Raises
    ------
    Interrupted
        On Ctrl-C or SIGTERM, with ``checkpoints``, once the checkpoint of the step it stopped at is saved.
    TrainingDiverged
        When a loss is not finite: the epoch and step; the last epoch's checkpoint stays as it was.
    """
    loop = _Loop(model, data, config.validate(), checkpoints, progress)
    state = loop.start(resume)
    with _StopFlag() as stop, deterministic_cudnn(loop.device), contextlib.closing(loop.threads):
        for epoch in range(state.epoch, config.epochs):
            state = loop.epoch(state, epoch, stop)
            if on_epoch is not None:
                on_epoch(state.history[-1])
            if stop.raised:
                raise loop.interrupted(state, stop)
            if config.n_iter_no_change is not None and state.stale >= config.n_iter_no_change:
                log.info("stopping after epoch %d: %d epochs without improving by %g", epoch + 1, state.stale, config.tol)
                break
    if loop.world > 1:
        check_identical_weights(model)
    return state.history


class _Loop:
    """What one call of :func:`train` sets up once (device, batches, optimizer, gradient step, saver), and an epoch."""

    def __init__(self, model: AutoEncoder, data, config: TrainConfig, checkpoints: Checkpoints | None, progress: bool):
        self.model, self.data, self.config, self.checkpoints, self.progress = model, data, config, checkpoints, progress
        self.rank, self.world = rank_and_world()
        self.device = training_device(config.device, self.world)
        if config.batch_size % self.world:
            raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {self.world} processes")
        model.to(self.device).train()
        self.batch = config.batch_size // self.world
        self.streamed = isinstance(data, Streamed)  # read from disk chunk by chunk
        if self.streamed:
            self.steps_per_epoch = data.steps_per_epoch(config.batch_size, self.world)
            if self.steps_per_epoch < 1:
                raise ConfigError(f"batch_size={config.batch_size} is larger than the {data.n_train} training rows")
        else:
            self.x_train = data.x_train.to(self.device)
            # Each process's share of an epoch's shuffled indices (all of them in a single process).
            self.sampler = DistributedSampler(range(len(self.x_train)), num_replicas=self.world, rank=self.rank,
                                              shuffle=True, seed=config.seed)  # fmt: skip
            self.steps_per_epoch = math.ceil(len(self.sampler) / self.batch)
        self.optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay)
        self.optimizer_step = step_function(self.optimizer)
        loss = LossModule(model, config.loss)
        self.loss_fn = DistributedDataParallel(loss) if self.world > 1 else loss
        self.precision = resolve(config.precision, self.device, model)
        if config.precision != "fp32":
            log.info("precision %s: %s products for the wide layers", config.precision, self.precision)
        self.gradients = gradient_step(model, self.loss_fn, self.optimizer, config, self.world, self.precision,
                                       self.device)  # fmt: skip
        self.graphed = graphed_step(self.gradients, self.optimizer_step, config, self.batch, self.device, self.world)
        self.after_step = model.config.objective.after_step
        self.saver = checkpoints if self.rank == 0 else None  # every process loads, rank 0 saves
        self.threads = Threads(self.device)  # as many as the other processes leave free
        self.lanes_logged = False

    def start(self, resume: bool) -> TrainState:
        """A fresh state, or (``resume``) the checkpoint's, loaded into the model and the optimizer."""
        state = self.checkpoints.load(self.model, self.optimizer) if resume and self.checkpoints is not None else None
        if state is None:
            if resume:
                log.info("no checkpoint yet: starting from epoch 1")
            return TrainState(world=self.world)
        if state.step and state.world != self.world:
            raise CheckpointError(f"the checkpoint stopped mid-epoch with {state.world} processes; resume it with as "
                                  f"many (not {self.world})")  # fmt: skip
        if state.epoch >= self.config.epochs:
            log.info("the checkpoint already finished %d epochs", state.epoch)
        state.world = self.world
        return state

    def batch_source(self, epoch: int, state: TrainState) -> Callable[[int], torch.Tensor]:
        """``step -> batch`` for ``epoch``, from ``state.step`` on (a resumed epoch skips what it did)."""
        config, world = self.config, self.world
        if not self.streamed:
            self.sampler.set_epoch(epoch)
            order = epoch_order(self.sampler, len(self.x_train), config.seed, epoch, world).to(self.device)
            return lambda step: self.x_train.index_select(0, order[step * self.batch : (step + 1) * self.batch])
        # full batches only, as many on every process
        source = self.data.batches(config.seed, epoch, self.batch, self.rank, world, self.device)
        if world > 1 and not self.lanes_logged:
            lanes, self.lanes_logged = lanes_for(config.batch_size, world), True
            same = lanes == lanes_for(config.batch_size, 1)
            log.info("process %d reads lanes %s of the %d lanes of every chunk (%s)", self.rank,
                     list(range(self.rank, lanes, world)), lanes, "together the batches one process makes" if same
                     else "batches not those of one process: the processes do not divide the lanes")  # fmt: skip
        for _ in range(state.step):
            next(source)
        return lambda step: next(source)

    def epoch(self, state: TrainState, epoch: int, stop: _StopFlag) -> TrainState:
        """Train one epoch (the rest of it, for a resumed one) and save it; returns the state after it."""
        config, steps, began = self.config, self.steps_per_epoch, time.perf_counter()
        batch_at = self.batch_source(epoch, state)
        if state.step == 0:  # a fresh epoch (a resumed mid-epoch one has its RNG state from the checkpoint)
            torch.manual_seed(epoch_seed(config.seed, epoch) + self.rank)  # noise, sampling: one stream per process
        bar = progress_bar(range(state.step, steps), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                           unit="step", progress=self.progress if self.rank == 0 else False)  # fmt: skip
        pending: list[tuple] = []  # (step, batch size, loss, terms) of the steps not looked at yet
        for step in bar:
            lr = learning_rate(config, epoch * steps + step, steps * config.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            xb = batch_at(step)
            if self.graphed is not None:  # gradients and update in one (a CUDA graph's replay)
                loss, terms = self.graphed(xb, lr)
            else:
                loss, terms = self.gradients(xb)
                if config.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
                self.optimizer_step()
                if self.after_step is not None:  # an objective's own care of its weights (unit decoder columns)
                    self.after_step(self.model)
            pending.append((step, len(xb), loss, terms))
            self.threads.tick()
            # Look at the losses (one host round trip) every LOOK_EVERY steps, at the end of the epoch, and on
            # Ctrl-C; under torchrun every process looks at the same steps, and a Ctrl-C waits for the next look.
            last = step + 1 == steps
            if not (last or len(pending) == LOOK_EVERY or (stop.raised and self.world == 1)):
                continue
            value, stopping = settle(pending, state, stop.raised, epoch, config, self.device)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if stopping:
                stop.raised = True
                if not last:  # mid-epoch: save this step, then stop
                    state.step = step + 1
                    if self.saver is not None and self.checkpoints is not None:
                        self.saver.save_step(self.model, self.optimizer, state)
                    raise self.interrupted(state, stop)
        bar.close()
        return self.finish_epoch(state, epoch, began)

    def finish_epoch(self, state: TrainState, epoch: int, began: float) -> TrainState:
        """The epoch's history row and the state after it, saved."""
        config = self.config
        evaluate = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        row = epoch_row(self.model, self.data, state, epoch, config.epochs, began, self.device, evaluate)
        monitored = row.get("test_mse_per_pixel", row["train_loss"])
        improved = monitored < state.best - config.tol
        state = TrainState(epoch + 1, 0, {}, 0, [*state.history, row], self.world, min(state.best, monitored),
                           0 if improved else state.stale + 1)  # fmt: skip
        if self.saver is not None:
            self.saver.save_epoch(self.model, self.optimizer, state)
        return state

    def interrupted(self, state: TrainState, stop: _StopFlag) -> BaseException:
        return Interrupted(state, signum=stop.signum) if self.checkpoints is not None else KeyboardInterrupt()


def epoch_order(sampler: DistributedSampler, n: int, seed: int, epoch: int, world: int) -> torch.Tensor:
    """This process's indices for ``epoch``: DistributedSampler's shuffle, which one process gets straight from
    ``randperm`` (the same permutation, without a list of 60,000 Python ints)."""
    if world == 1:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return torch.tensor(list(sampler))


def gradient_step(model: AutoEncoder, loss_fn: nn.Module, optimizer, config: TrainConfig, world: int,
                  precision: str = "fp32", device: torch.device | None = None):  # fmt: skip
    """``step(x) -> (loss, terms)``, detached, with the batch's gradient left in every ``.grad``: hand-derived for
    the models :mod:`aekit.mlpgrad`'s registry covers (one process, ``gradients="auto"``), else autograd; with
    ``precision="bf16"`` the wide layers' products take bf16 operands (:mod:`aekit.precision`)."""
    bf16 = precision == "bf16"
    manual = MLPStep.of(model, config.loss, bf16) if world == 1 and config.gradients != "autograd" else None
    if manual is not None:
        log.info("training step: hand-derived gradients (aekit.training.mlpgrad: %s body, %s objective, %s loss; "
                 "--gradients autograd turns them off)", model.config.body.kind, model.config.objective.kind,
                 config.loss)  # fmt: skip
        return manual

    def autograd_step(xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with autocast_wide_layers(model, device) if bf16 else contextlib.nullcontext():
            loss, terms = loss_fn(xb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), {k: t.detach() for k, t in terms.items()}

    return autograd_step


def graphed_step(gradients, optimizer_step, config: TrainConfig, rows: int, device: torch.device,
                 world: int) -> GraphedStep | None:  # fmt: skip
    """The step recorded as a CUDA graph (:mod:`aekit.graphs`) where it qualifies: on a GPU, ``gradients="auto"``,
    one process, the hand-derived step of a model without random noise (draws inside a graph would not follow the
    eager step's random stream, which a resumed run retraces), fused Adam, no gradient clipping; else None."""
    if device.type not in GRAPHED_DEVICES or config.gradients != "auto" or world != 1 or config.clip_grad is not None:
        return None
    if not isinstance(gradients, MLPStep) or gradients.noise is not None or not isinstance(optimizer_step, AdamStep):
        return None

    def eager(xb: torch.Tensor, lr: float):
        for group in optimizer_step.optimizer.param_groups:
            group["lr"] = lr
        out = gradients(xb)
        optimizer_step()
        return out

    def body(xb: torch.Tensor, lr: torch.Tensor, loss: torch.Tensor) -> None:
        if not optimizer_step.ready:
            raise RuntimeError("fused Adam has no state to update yet")
        loss.copy_(gradients(xb)[0])
        optimizer_step.update(lr)

    return GraphedStep(eager, body, rows, device)


def settle(pending: list[tuple], state: TrainState, stop_raised: bool, epoch: int, config: TrainConfig,
           device) -> tuple[float, bool]:  # fmt: skip
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
            raise TrainingDiverged(value, epoch + 1, step + 1, config.lr)
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
        feature, example = ("pixel", "image") if data.space.is_image else ("feature", "row")
        test = (f"  test MSE/{feature} {row['test_mse_per_pixel']:.5f}  test SSE/{example} "
                f"{row['test_sse_per_image']:.3f}" if "test_mse_per_pixel" in row else "")  # fmt: skip
        log.info("epoch %d/%d  train loss %.5f%s  %.1fs", row["epoch"], epochs, row["train_loss"], test, row["seconds"])
    return row
