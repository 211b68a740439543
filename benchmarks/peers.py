"""The chapter's model trained the idiomatic way in each framework installed here, side by side.

Same data (MNIST, pixels in [0, 1], 60,000 training images), model (784-256-32-256-784, ReLU, sigmoid output),
loss (MSE), optimizer (Adam, lr 1e-3), batch (128, shuffled every epoch) and epochs, each framework in its own
process, one after another, in alternating rounds so that a noisy neighbour hurts all alike:

- aekit: ``aekit.train.train`` as ``aekit train`` runs it: test error after every epoch (counted in the
  epoch's time), a checkpoint after every epoch, the NaN and Ctrl-C guards;
- bare PyTorch: the tutorial loop, ``DataLoader(TensorDataset(x), batch_size=128, shuffle=True)``,
  ``nn.Sequential``, ``torch.optim.Adam``, ``nn.MSELoss``, zero_grad / backward / step, nothing else;
- keras-jax: Keras 3 on JAX, ``model.compile(Adam(1e-3), "mse")`` and ``model.fit(x, x, batch_size=128)``
  (install with ``pip install 'aekit[peers]'``; skipped with a note when missing).

Prints each framework's epoch-1 seconds (compilation and warm-up) apart from the median seconds per epoch of
epochs 2 on, its ratio to the bare loop and to Keras-on-JAX, and the final test SSE per image (Hinton &
Salakhutdinov 2006's unit) with PCA at 32 components beside it. Run: ``python benchmarks/peers.py``.
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


def run_aekit(x, x_test, epochs, device):
    import torch

    import aekit
    from aekit.train import TrainConfig, train

    torch.manual_seed(0)
    data = aekit.Data(torch.from_numpy(x).reshape(-1, 1, 28, 28), torch.from_numpy(x_test).reshape(-1, 1, 28, 28))
    model = aekit.AutoEncoder((1, 28, 28), CODE, (HIDDEN,))
    with tempfile.TemporaryDirectory() as run:
        history = train(model, data, TrainConfig(epochs=epochs, lr=LR, batch_size=BATCH, device=device), run=run,
                        progress=False)  # fmt: skip
    return [row["seconds"] for row in history], history[-1]["test_sse_per_image"]


def run_bare(x, x_test, epochs, device):
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)  # fmt: skip
    model = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CODE), nn.Linear(CODE, HIDDEN),
                          nn.ReLU(), nn.Linear(HIDDEN, 784), nn.Sigmoid()).to(device)  # fmt: skip
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), lr=LR), nn.MSELoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=BATCH, shuffle=True)
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        for (xb,) in loader:
            xb = xb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), xb)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)
    with torch.no_grad():
        sse = test_sse(lambda t: model(torch.from_numpy(t).to(device)).cpu().numpy(), x_test)
    return seconds, sse


def run_keras_jax(x, x_test, epochs, device):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(HIDDEN, "relu"), keras.layers.Dense(CODE),
                              keras.layers.Dense(HIDDEN, "relu"), keras.layers.Dense(784, "sigmoid")])  # fmt: skip
    model.compile(keras.optimizers.Adam(LR), "mse")
    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.began)

    model.fit(x, x, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    return seconds, test_sse(lambda t: np.asarray(model.predict(t, batch_size=4096, verbose=0)), x_test)


RUNNERS = {"aekit": run_aekit, "bare": run_bare, "keras-jax": run_keras_jax}
NEEDS = {"keras-jax": ("keras", "jax")}


def available(name: str) -> str | None:
    """None if ``name`` can run here, else why not."""
    import importlib.util

    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    return f"not installed ({', '.join(missing)}; pip install 'aekit[peers]')" if missing else None


def child(args) -> None:
    data = np.load(args.data)
    seconds, sse = RUNNERS[args.child](data["x"], data["x_test"], args.epochs, args.device)
    print("RESULT " + json.dumps({"seconds": seconds, "sse": sse}))


def run_child(name: str, data: Path, epochs: int, device: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--data", str(data), "--epochs", str(epochs),
                          "--device", device], capture_output=True, text=True)  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5: epoch 1, then 2-5 timed)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every framework (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto: for aekit and the bare loop "
                        "(Keras-on-JAX uses whatever jax was installed for)")  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS), help="frameworks to run")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is reported apart)")

    import torch
    from sklearn.decomposition import PCA

    import aekit

    mnist = aekit.data.load(aekit.DataConfig(name="mnist"))
    x, x_test = (t.reshape(len(t), -1).numpy() for t in (mnist.x_train, mnist.x_test))
    pca = PCA(CODE, random_state=0).fit(x)
    pca_sse = test_sse(lambda t: pca.inverse_transform(pca.transform(t)), x_test)
    names = [n for n in args.only if not available(n)]
    for name in set(args.only) - set(names):
        print(f"{name}: skipped, {available(name)}")
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.npz"
        np.savez(path, x=x, x_test=x_test)
        for round_ in range(args.rounds):
            for name in names:
                results[name].append(run_child(name, path, args.epochs, args.device))
                seconds = results[name][-1]["seconds"]
                print(f"round {round_ + 1}: {name:<10} " + " ".join(f"{s:.2f}" for s in seconds), flush=True)

    table = {}
    for name, runs in results.items():
        table[name] = {"first": statistics.median(r["seconds"][0] for r in runs),
                       "median": statistics.median(s for r in runs for s in r["seconds"][1:]),
                       "sse": statistics.mean(r["sse"] for r in runs)}  # fmt: skip
    where = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"  # fmt: skip
    print(f"\nthe chapter's 784-256-32 on MNIST, batch {BATCH}, Adam {LR:g}, {args.epochs} epochs x {args.rounds} "
          f"rounds; {where}; torch {torch.__version__}")  # fmt: skip
    print(f"{'':<11}{'epoch 1 s':>10}{'s/epoch':>10}{'vs bare':>9}{'vs keras-jax':>13}{'test SSE':>10}{'vs bare':>9}")
    for name, row in table.items():
        vs = lambda other: f"{row['median'] / table[other]['median']:.3f}" if other in table else "-"  # noqa: E731
        sse_vs = f"{row['sse'] / table['bare']['sse']:.3f}" if "bare" in table else "-"
        print(f"{name:<11}{row['first']:>10.2f}{row['median']:>10.3f}{vs('bare'):>9}{vs('keras-jax'):>13}"
              f"{row['sse']:>10.3f}{sse_vs:>9}")  # fmt: skip
    print(f"{'PCA-32':<11}{'':>10}{'':>10}{'':>9}{'':>13}{pca_sse:>10.3f}")
    if "aekit" in table and "bare" in table:
        bars = [f"aekit / bare = {table['aekit']['median'] / table['bare']['median']:.3f} (bar: <= 0.65)"]
        if "keras-jax" in table:
            bars.append(f"aekit / keras-jax = {table['aekit']['median'] / table['keras-jax']['median']:.3f} "
                        "(bar: <= 0.90)")  # fmt: skip
        drift = abs(table["aekit"]["sse"] / table["bare"]["sse"] - 1)
        bars.append(f"test SSE within {100 * drift:.1f}% of the bare loop's (bar: 2%)")
        print("; ".join(bars))


if __name__ == "__main__":
    main()
