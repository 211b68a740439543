"""aekit on a shared machine: seconds per epoch of ``aekit train --preset chapter`` alone and with a second one
started at the same moment, and the README's imputer line alone and beside a busy process, in one run.

Each setting is measured as a pair, side by side in this run: one process alone, then two at once (their mean
seconds per epoch, from each run's history.csv, so start-up and the end-of-training analysis are left out). The
ratio ``together / alone`` is what a user sharing the cores pays; the bar is 2.5x (two processes on two cores
cannot do better than about 2x). Then the README's imputer line on scikit-learn's digits, alone and beside a busy
process that keeps torch's own threads (another program, as it were); the bar is 2x. The settings:

- ``defaults``: what aekit does by itself;
- ``torch``: torch's own defaults, as before aekit set anything (``AEKIT_THREADS=torch``);
- ``1 thread``: ``OMP_NUM_THREADS=1``, the classic workaround.

Run: ``python benchmarks/shared_machine.py [--epochs 3] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {  # name -> environment changes
    "defaults": {},
    "torch": {"AEKIT_THREADS": "torch"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
IMPUTER = ("import numpy as np, time\nfrom sklearn.datasets import load_digits\nimport aekit\n"
           "X, y = load_digits(return_X_y=True)\nX = X / 16\n"
           "holes = np.where(np.random.default_rng(0).random(X.shape) < 0.3, np.nan, X)\n"
           "began = time.perf_counter()\naekit.AutoEncoderImputer(random_state=0).fit_transform(holes)\n"
           "print(time.perf_counter() - began)\n")  # the README's line, timed from after the imports


def environment(changes: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "AEKIT_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **changes}


def train(out: Path, epochs: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aekit", "train", "--preset", "chapter", "--epochs", str(epochs),
                             "--no-analysis", "--no-progress", "--out", str(out), "--overwrite"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def seconds_per_epoch(out: Path) -> float:
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    return statistics.mean(float(row["seconds"]) for row in rows)  # every epoch, the first (adapting) one too


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"aekit train failed:\n{err[-2000:]}")


def alone_and_together(folder: Path, epochs: int, env: dict) -> tuple[float, float]:
    one = folder / "alone"
    finish(train(one, epochs, env))
    pair = [train(folder / f"pair{i}", epochs, env) for i in range(2)]
    for process in pair:
        finish(process)
    return seconds_per_epoch(one), statistics.mean(seconds_per_epoch(folder / f"pair{i}") for i in range(2))


def imputer(env: dict, busy: bool, folder: Path) -> float:
    # the busy neighbour keeps torch's own threads whatever the setting: another program, not another aekit
    neighbour = train(folder / "neighbour", 50, {**env, "AEKIT_THREADS": "torch"}) if busy else None
    try:
        time.sleep(3 if busy else 0)  # the neighbour is training by then
        done = subprocess.run([sys.executable, "-c", IMPUTER], env=env, capture_output=True, text=True, check=True)
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="pairs per setting (medians reported)")
    parser.add_argument("--only", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-imputer", action="store_true", help="leave out the imputer line")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"  # fmt: skip
    print(f"{os.cpu_count()} CPUs ({cpu}); aekit train --preset chapter --epochs {args.epochs}, {args.rounds} rounds")
    print(f"{'setting':<10} {'alone s/epoch':>14} {'two at once':>12} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for _ in range(args.rounds):  # settings interleaved round by round: a drifting machine hurts all alike
            for name in args.only:
                results.setdefault(name, []).append(alone_and_together(Path(tmp) / name, args.epochs,
                                                                       environment(SETTINGS[name])))  # fmt: skip
        for name, pairs in results.items():
            alone = statistics.median(p[0] for p in pairs)
            together = statistics.median(p[1] for p in pairs)
            print(f"{name:<10} {alone:>14.2f} {together:>12.2f} {together / alone:>6.2f}x")
        if not args.no_imputer:
            print("\nthe README's imputer line on digits (seconds), alone and beside a busy process (an aekit train with "
                  "torch's own threads)")
            for name in args.only:
                env = environment(SETTINGS[name])
                quiet, busy = imputer(env, False, Path(tmp)), imputer(env, True, Path(tmp))
                print(f"{name:<10} {quiet:>8.1f} {busy:>8.1f} {busy / quiet:>6.2f}x")


if __name__ == "__main__":
    main()
