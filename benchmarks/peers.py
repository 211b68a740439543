"""The chapter's model trained the idiomatic way in each framework installed here, side by side.

Same data (MNIST, pixels in [0, 1], 60,000 training images), model (784-256-32-256-784, ReLU, sigmoid output),
loss (MSE), optimizer (Adam, lr 1e-3), batch (128, shuffled every epoch) and epochs, each framework in its own
process, their epochs alternating (one epoch of each in turn, who goes first rotating), so that a noisy
neighbour or a slow hour hurts all alike:

- aekit: ``aekit.training.loop.train`` as ``aekit train`` runs it, one call for all the epochs: test error after every
  epoch (counted in the epoch's time), a checkpoint after every epoch (counted too), the NaN and Ctrl-C guards;
- bare PyTorch: the tutorial loop, ``DataLoader(TensorDataset(x), batch_size=128, shuffle=True)``,
  ``nn.Sequential``, ``torch.optim.Adam``, ``nn.MSELoss``, zero_grad / backward / step, nothing else;
- keras-jax: Keras 3 on JAX, ``model.compile(Adam(1e-3), "mse")`` and ``model.fit(x, x, batch_size=128)``
  (install with ``pip install 'aekit[peers]'``; skipped with a note when missing).

Prints each framework's epoch-1 seconds (compilation and warm-up) apart from the median seconds per epoch of
epochs 2 on, its ratio to the bare loop and to Keras-on-JAX (the median of the ratios of epochs run back to
back), and the final test SSE per image (Hinton & Salakhutdinov 2006's unit) with PCA at 32 components beside
it. One seed's test SSE differs from another's by about 2% in every framework (seeds 0-3, 8 epochs: aekit
5.29-5.45, the bare loop 5.32-5.45), so ``--sse-seeds 4`` compares the means of four trainings each. Run:
``python benchmarks/peers.py`` (``--device cuda`` runs aekit and the bare loop on the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMEWORKS = ("aekit", "bare", "keras-jax")
BATCH, LR, CODE, HIDDEN = 128, 1e-3, 32, 256


def test_sse(reconstruct, x_test: np.ndarray) -> float:
    """Squared error summed over the 784 pixels, averaged over the test images."""
    return float(((reconstruct(x_test).astype(np.float64) - x_test) ** 2).sum(1).mean())


class Aekit:
    """``aekit.training.loop.train`` for all the epochs in one call, as ``aekit train`` runs it: test error after every
    epoch, a checkpoint written after every epoch, the NaN and Ctrl-C guards. Its ``on_epoch`` callback reports
    each epoch and waits for the next to be asked for; an epoch is timed from the callback's return (for epoch 1,
    from the call) to the next callback, so its evaluation and checkpoint are included. (The call runs in the main
    thread: torch trains ~20% slower in a second thread here, which has its own OpenMP team.)"""

    PRECISION, GRADIENTS = "fp32", "auto"

    def __init__(self, x, x_test, device, epochs, seed=0):
        import torch

        import aekit
        from aekit.configs import TrainConfig

        torch.manual_seed(seed)
        self.data = aekit.Data(torch.from_numpy(x).reshape(-1, 1, 28, 28),
                               torch.from_numpy(x_test).reshape(-1, 1, 28, 28))  # fmt: skip
        self.model = aekit.AutoEncoder((1, 28, 28), CODE, (HIDDEN,))
        self.config = TrainConfig(epochs=epochs, lr=LR, batch_size=BATCH, device=device, seed=seed,
                                  **({"precision": self.PRECISION} if self.PRECISION != "fp32" else {}),
                                  **({"gradients": self.GRADIENTS} if self.GRADIENTS != "auto" else {}))  # fmt: skip

    def serve(self, commands, answer) -> None:
        import inspect

        from aekit.training.loop import train

        def on_epoch(row: dict) -> None:
            nonlocal began
            answer(time.perf_counter() - began)
            next(commands)  # the next "epoch" (or, after the last, "sse")
            began = time.perf_counter()

        next(commands)  # the first "epoch"
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as run:
            if "checkpoints" in inspect.signature(train).parameters:  # aekit 0.2 after the layering step
                from aekit.run.rundir import RunCheckpoints, RunDir

                saving = {"checkpoints": RunCheckpoints(RunDir(run))}
            else:  # an earlier aekit (--aekit-from): train(..., run=PATH)
                saving = {"run": run}
            history = train(self.model, self.data, self.config, progress=False, on_epoch=on_epoch, **saving)
        answer(history[-1]["test_sse_per_image"])


class Bare:
    """The tutorial loop; only its epochs are timed, and the test error is computed once at the end."""

    def __init__(self, x, x_test, device, epochs, seed=0):
        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        torch.manual_seed(seed)  # the initial weights and the loader's shuffles
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)  # fmt: skip
        self.model = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CODE), nn.Linear(CODE, HIDDEN),
                                   nn.ReLU(), nn.Linear(HIDDEN, 784), nn.Sigmoid()).to(self.device)  # fmt: skip
        self.optimizer, self.loss_fn = torch.optim.Adam(self.model.parameters(), lr=LR), nn.MSELoss()
        self.loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=BATCH, shuffle=True)
        self.x_test = x_test

    def epoch(self) -> float:
        import torch

        began = time.perf_counter()
        for (xb,) in self.loader:
            xb = xb.to(self.device)
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(xb), xb)
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began

    def sse(self) -> float:
        import torch

        with torch.no_grad():
            return test_sse(lambda t: self.model(torch.from_numpy(t).to(self.device)).cpu().numpy(), self.x_test)


class KerasJax:
    """``model.fit(x, x, batch_size=128, epochs=1)`` per call, timed from Keras's epoch-begin to epoch-end
    callback (the fit call's own setup is not counted)."""

    def __init__(self, x, x_test, device, epochs, seed=0):
        os.environ["KERAS_BACKEND"] = "jax"
        import keras

        keras.utils.set_random_seed(seed)
        self.model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(HIDDEN, "relu"),
                                       keras.layers.Dense(CODE), keras.layers.Dense(HIDDEN, "relu"),
                                       keras.layers.Dense(784, "sigmoid")])  # fmt: skip
        self.model.compile(keras.optimizers.Adam(LR), "mse")
        self.x, self.x_test, self.seconds = x, x_test, []
        outer = self

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.seconds.append(time.perf_counter() - self.began)

        self.clock = Clock()

    def epoch(self) -> float:
        self.model.fit(self.x, self.x, batch_size=BATCH, epochs=1, shuffle=True, verbose=0, callbacks=[self.clock])
        return self.seconds[-1]

    def sse(self) -> float:
        return test_sse(lambda t: np.asarray(self.model.predict(t, batch_size=4096, verbose=0)), self.x_test)


class AekitBf16(Aekit):
    """aekit with ``precision="bf16"`` (--precision bf16): bf16 products for the wide layers."""

    PRECISION = "bf16"


class AekitEager(Aekit):
    """aekit with ``gradients="eager"`` (--eager): the hand-derived step without the CUDA graph (on a GPU)."""

    GRADIENTS = "eager"


RUNNERS = {"aekit": Aekit, "bare": Bare, "keras-jax": KerasJax, "aekit-base": Aekit,  # aekit-base: --aekit-from
           "aekit-bf16": AekitBf16, "aekit-eager": AekitEager}  # fmt: skip
NEEDS = {"keras-jax": ("keras", "jax")}


def available(name: str) -> str | None:
    """None if ``name`` can run here, else why not."""
    import importlib.util

    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    return f"not installed ({', '.join(missing)}; pip install 'aekit[peers]')" if missing else None


def answer(value: float) -> None:
    print(json.dumps(value), flush=True)


def serve(trainer, commands, answer) -> None:
    """Answer "epoch" with an epoch's seconds, then "sse" with the test SSE/image. aekit serves itself (its epochs
    run inside one ``train()`` call); the bare loop and Keras are driven here, an ``epoch()`` call per epoch."""
    if hasattr(trainer, "serve"):
        return trainer.serve(commands, answer)
    for line in commands:
        if line.strip() != "epoch":
            return answer(trainer.sse())
        answer(trainer.epoch())


def untimed_sse(name: str, x, x_test, device: str, epochs: int, seed: int) -> float:
    """The test SSE/image of a fresh model of framework ``name`` trained for ``epochs`` from ``seed``."""
    trainer, answers = RUNNERS[name](x, x_test, device, epochs, seed), []
    serve(trainer, iter(["epoch"] * epochs + ["sse"]), answers.append)
    return answers[-1]


def child(args) -> None:
    """One framework in its own process: an epoch per "epoch" line on stdin, its seconds on stdout; then "sse",
    the timed model's test SSE/image; then "seed K" lines, the test SSE/image of a model trained from seed K."""
    data = np.load(args.data)
    trainer = RUNNERS[args.child](data["x"], data["x_test"], args.device, args.epochs)
    print("READY", flush=True)
    commands = iter(sys.stdin)
    serve(trainer, commands, answer)
    for line in commands:
        answer(untimed_sse(args.child, data["x"], data["x_test"], args.device, args.epochs, int(line.split()[1])))


class Child:
    """A framework's process, driven one epoch at a time so that epochs of every framework alternate."""

    def __init__(self, name: str, data: Path, device: str, epochs: int, source: str | None = None):
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(Path(source) / "src")} if source else None  # another aekit
        self.process = subprocess.Popen([sys.executable, __file__, "--child", name, "--data", str(data),
                                         "--device", device, "--epochs", str(epochs)], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.read()

    def read(self):
        for line in self.process.stdout:
            if line.startswith("READY"):
                return None
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue  # a framework's own chatter
        raise SystemExit(f"{self.name} stopped (exit code {self.process.wait()})")

    def ask(self, what: str):
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        return self.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs (default 8: epoch 1 apart, then 2-8)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto: for aekit and the bare loop "
                        "(Keras-on-JAX uses whatever jax was installed for)")  # fmt: skip
    parser.add_argument("--sse-seeds", type=int, default=1, metavar="N",
                        help="compare test SSE as the mean over N seeds (default 1, the timed run; each further seed "
                        "trains every framework again, untimed): one seed's SSE varies by ~2%% from seed to seed")  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS), help="frameworks to run")
    parser.add_argument("--aekit-from", metavar="CHECKOUT", help="also time the aekit of another checkout (e.g. a git "
                        "worktree of an earlier commit) beside this one, as 'aekit-base': a change's cost in one run")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: also time aekit with "
                        "--precision bf16, as 'aekit-bf16', beside fp32 aekit (same seeds)")
    parser.add_argument("--eager", action="store_true", help="also time aekit with --gradients eager, as "
                        "'aekit-eager': on a GPU, the step without its CUDA graph (what the graph saves, in one run)")
    parser.add_argument("--child", choices=(*FRAMEWORKS, "aekit-base", "aekit-bf16", "aekit-eager"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is reported apart)")
    if args.sse_seeds < 1:
        parser.error("--sse-seeds must be at least 1")

    import torch
    from sklearn.decomposition import PCA

    import aekit

    mnist = aekit.data.datasets.load(aekit.DataConfig(name="mnist"))
    x, x_test = (t.reshape(len(t), -1).numpy() for t in (mnist.x_train, mnist.x_test))
    pca = PCA(CODE, random_state=0).fit(x)
    pca_sse = test_sse(lambda t: pca.inverse_transform(pca.transform(t)), x_test)
    names = [n for n in args.only if not available(n)] + (["aekit-base"] if args.aekit_from else []) + \
        (["aekit-bf16"] if args.precision == "bf16" else []) + (["aekit-eager"] if args.eager else [])  # fmt: skip
    for name in set(args.only) - set(names):
        print(f"{name}: skipped, {available(name)}")
    seconds: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.npz"
        np.savez(path, x=x, x_test=x_test)
        # started and loaded before any timing
        children = [Child(name, path, args.device, args.epochs, args.aekit_from if name == "aekit-base" else None)
                    for name in names]  # fmt: skip
        for epoch in range(args.epochs):
            turn = children[epoch % len(children):] + children[: epoch % len(children)]  # who goes first rotates
            for c in turn:
                seconds[c.name].append(c.ask("epoch"))
            print(f"epoch {epoch + 1}: " + "  ".join(f"{c.name} {seconds[c.name][-1]:.2f}" for c in children),
                  flush=True)  # fmt: skip
        runs = {c.name: [c.ask("sse")] for c in children}  # the timed model's, then one per further seed
        for seed in range(1, args.sse_seeds):
            for c in children:
                runs[c.name].append(c.ask(f"seed {seed}"))
            print(f"seed {seed}: " + "  ".join(f"{c.name} {runs[c.name][-1]:.3f}" for c in children), flush=True)
        sse = {name: statistics.mean(values) for name, values in runs.items()}

    def ratio(a: str, b: str) -> float:
        """Median over epochs 2 on of a's seconds over b's in the same epoch (run back to back)."""
        return statistics.median(x / y for x, y in zip(seconds[a][1:], seconds[b][1:]))

    where = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"  # fmt: skip
    print(f"\nthe chapter's 784-256-32 on MNIST, batch {BATCH}, Adam {LR:g}, {args.epochs} epochs, each framework's "
          f"epochs alternating with the others'; {where}; torch {torch.__version__}")  # fmt: skip
    print("ratios: the median over epochs 2 on of the ratio of two frameworks' same-numbered epochs (run back to back)")
    if args.sse_seeds > 1:
        print(f"test SSE: the mean over {args.sse_seeds} seeds (0: the timed run), from each framework's own initial "
              f"weights and shuffles; per seed: " + "; ".join(f"{n} " + ", ".join(f"{v:.3f}" for v in runs[n])
                                                        for n in names))  # fmt: skip
    print(f"{'':<11}{'epoch 1 s':>10}{'s/epoch':>10}{'vs bare':>9}{'vs keras-jax':>13}{'test SSE':>10}{'vs bare':>9}")

    def vs(name: str, other: str) -> str:
        return f"{ratio(name, other):.3f}" if other in seconds else "-"

    for name in names:
        sse_vs = f"{sse[name] / sse['bare']:.3f}" if "bare" in sse else "-"
        print(f"{name:<11}{seconds[name][0]:>10.2f}{statistics.median(seconds[name][1:]):>10.3f}{vs(name, 'bare'):>9}"
              f"{vs(name, 'keras-jax'):>13}{sse[name]:>10.3f}{sse_vs:>9}")  # fmt: skip
    print(f"{'PCA-32':<11}{'':>10}{'':>10}{'':>9}{'':>13}{pca_sse:>10.3f}")
    if "aekit" in seconds and "bare" in seconds:
        bars = [f"aekit / bare = {ratio('aekit', 'bare'):.3f} (bar: <= 0.65)"]
        if "keras-jax" in seconds:
            bars.append(f"aekit / keras-jax = {ratio('aekit', 'keras-jax'):.3f} (bar: <= 0.90)")
        seeds = f", mean of {args.sse_seeds} seeds" if args.sse_seeds > 1 else ", one seed: try --sse-seeds 4"
        bars.append(f"test SSE within {100 * abs(sse['aekit'] / sse['bare'] - 1):.1f}% of the bare loop's{seeds} "
                    f"(bar: 2%)")  # fmt: skip
        print("; ".join(bars))
    if "aekit-bf16" in seconds:
        import platform

        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                    if ":" in line)  # fmt: skip
        info = {k.strip(): v.strip() for k, v in info.items()}  # the first processor's lines
        cpu = f"{info.get('model name', platform.processor())} (family {info.get('cpu family', '?')}, model " \
              f"{info.get('model', '?')})"  # fmt: skip
        gpu = args.device != "cpu" and torch.cuda.is_available()
        keras = f", vs keras-jax {ratio('aekit-bf16', 'keras-jax'):.3f} (bar: <= {0.3 if gpu else 0.7:.2f})" \
            if "keras-jax" in seconds else ""  # fmt: skip
        print(f"aekit-bf16 / aekit (fp32) = {ratio('aekit-bf16', 'aekit'):.3f}{keras}; test SSE {sse['aekit-bf16']:.3f} "
              f"against fp32's {sse['aekit']:.3f} ({100 * (sse['aekit-bf16'] / sse['aekit'] - 1):+.2f}%, bar: 1%); "
              + (f"GPU: {torch.cuda.get_device_name()}" if gpu else f"CPU: {cpu}"))  # fmt: skip
    if "aekit-eager" in seconds:
        keras = f", vs keras-jax {ratio('aekit', 'keras-jax'):.3f} (bar on a GPU: <= 0.30)" if "keras-jax" in seconds else ""
        print(f"aekit / aekit-eager = {ratio('aekit', 'aekit-eager'):.3f} (the CUDA graph's share, on a GPU){keras}")
    if "aekit-base" in seconds and "bare" in seconds:
        print(f"aekit / aekit-base = {ratio('aekit', 'aekit-base'):.3f}; their ratios to the bare loop "
              f"{ratio('aekit', 'bare'):.3f} and {ratio('aekit-base', 'bare'):.3f} "
              f"({100 * (ratio('aekit', 'bare') / ratio('aekit-base', 'bare') - 1):+.1f}%)")


if __name__ == "__main__":
    main()
