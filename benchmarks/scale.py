"""Training on data bigger than memory: rows/s and peak anonymous memory at 60 k, 600 k and 6 M rows.

Writes synthetic uint8 data of 784 columns (MNIST-like: a few smooth blobs per row) to .npy files, then, each in
a fresh process, trains the chapter's model for a fixed number of steps on each:

- streamed: ``aekit.data.datasets.load`` as ``aekit train --data big.npy`` does for a file over the threshold (forced here
  for every size, so the three are comparable): chunks of ~16 MB (as float32) read ahead by a background thread;
- in memory: the 60 k file loaded whole, batches sliced from one tensor (aekit's path for small data).

Prints rows/s (the timed steps, after 20 warm-up steps) and the peak ``RssAnon`` of the process (anonymous
memory: the page cache that the memory map fills is the kernel's and is given back under pressure), sampled
every 20 ms from /proc/self/status, side by side. ``--huge`` adds a ~25 GB file (32 M rows), more than this
machine's memory. Files go to ``--dir`` (default: a temporary folder, removed at the end).

Bars (issue: data bigger than memory): the peak at 6 M rows within 1.2x of the one at 60 k; streamed rows/s at 6 M
at least 0.8x the in-memory path's at 60 k; the huge run completes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, threading, time
import numpy as np, torch
import aekit
from aekit.data import datasets as data_mod
from aekit.data.datasets import stream
from aekit.training.mlpgrad import MLPStep
from aekit.training.optim import AdamStep, make_optimizer

peak = [0]
def watch():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()

path, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "streamed":
    stream.STREAM_THRESHOLD_BYTES = 0
data = data_mod.load(data_mod.DataConfig(name=path))
torch.manual_seed(0)
model = aekit.AutoEncoder((784,), 32, (256,))
optimizer = make_optimizer("adam", model.parameters(), 1e-3); adam = AdamStep(optimizer); step = MLPStep.of(model, "mse")
batch = 128
if mode == "streamed":
    source = data.batches(0, 0, batch, 0, 1, torch.device("cpu"))
else:
    order = torch.randperm(len(data.x_train))
    source = (data.x_train.index_select(0, order[i * batch:(i + 1) * batch]) for i in range(10**9))
losses = []
for i in range(steps + 20):
    if i == 20:
        began = time.perf_counter()
    loss, _ = step(next(source)); adam(); losses.append(loss)
seconds = time.perf_counter() - began
time.sleep(0.05)
print(json.dumps({"rows_per_s": steps * batch / seconds, "peak_anon_mb": peak[0] / 1024,
                  "loss": float(torch.stack(losses[-50:]).mean())}))
"""


def write_data(path: Path, rows: int, block: int = 100_000) -> None:
    """Synthetic images as uint8 (N, 784), written block by block through a memmap (never whole in memory): each
    row one of 4,096 smooth templates (a blob on a 28x28 grid) plus noise, so there is something to learn."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(28), np.arange(28), indexing="ij"), -1).reshape(784, 2)
    centers = rng.uniform(4, 24, size=(4096, 2))
    templates = (230 * np.exp(-((grid[None] - centers[:, None]) ** 2).sum(-1) / 18)).astype(np.uint8)  # (4096, 784)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 784))
    for start in range(0, rows, block):
        n = min(block, rows - start)
        out[start : start + n] = templates[rng.integers(0, 4096, n)] + rng.integers(0, 25, (n, 784), dtype=np.uint8)
    out.flush()
    del out


def command_peak(path: Path, out: Path) -> tuple[float, float]:
    """Peak RssAnon (MB) of a whole ``aekit train --data PATH --epochs 1`` (its evaluation and PCA included), sampled
    every 50 ms from the parent, and its wall seconds."""
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "aekit", "train", "--data", str(path), "--epochs", "1",
                                "--out", str(out), "--overwrite", "--no-progress", "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peak = watch(process)
    if process.returncode:
        raise SystemExit(f"aekit train on {path.name} failed:\n{process.stderr.read()[-3000:]}")
    return peak, time.perf_counter() - began


def write_parquet(npy: Path, path: Path, block: int = 50_000) -> None:
    """The rows of ``npy`` as a Parquet table of 784 uint8 columns, one row group per block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.load(npy, mmap_mode="r")
    writer = None
    for start in range(0, len(x), block):
        part = np.asarray(x[start : start + block])
        table = pa.table({f"p{j}": part[:, j] for j in range(part.shape[1])})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def score_peak(run: Path, parquet: Path, out: Path) -> tuple[float, float]:
    """Peak RssAnon (MB) and wall seconds of ``aekit score RUN --input PARQUET --out OUT``."""
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "aekit", "score", str(run), "--input", str(parquet), "--out",
                                str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peak = watch(process)
    if process.returncode:
        raise SystemExit(f"aekit score failed:\n{process.stderr.read()[-3000:]}")
    return peak, time.perf_counter() - began


def score_check(run: Path, folder: Path, out: Path) -> None:
    """``aekit score`` on the 60 k- and 6 M-row Parquet files (the same writer: row groups of 50 k rows): peak
    RssAnon of each, and the 6 M run's first 60 k scores against scoring those rows in memory."""
    import torch

    import aekit
    from aekit.training.loop import squared_errors

    small_peak, _ = score_peak(run, folder / "rows-60000.parquet", out)
    peak, seconds = score_peak(run, folder / "rows-6000000.parquet", out)
    npy = folder / "rows-6000000.npy"
    scores = np.load(out, mmap_mode="r")
    loaded = aekit.load_run(run)
    head = torch.from_numpy(np.load(npy, mmap_mode="r")[:60_000].astype(np.float32) / 255)
    expected = (squared_errors(loaded.model, head) / head[0].numel()).numpy()
    diff = float(np.abs(np.asarray(scores[:60_000]) - expected).max())
    print(f"aekit score on {len(scores):,} Parquet rows: {seconds:.0f} s, {len(scores) / seconds:,.0f} rows/s, peak "
          f"RssAnon {peak:,.0f} MB vs {small_peak:,.0f} MB on 60,000 rows (ratio {peak / small_peak:.2f}, bar <= 1.2); "
          f"its first 60,000 scores vs in-memory scoring: max |diff| {diff:.2e}")  # fmt: skip


def watch(process: subprocess.Popen) -> float:
    """Wait for ``process``, sampling its RssAnon every 50 ms; the peak in MB."""
    peak = 0
    while process.poll() is None:
        try:
            for line in open(f"/proc/{process.pid}/status"):
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.05)
    return peak / 1024


def child(path: Path, mode: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(steps)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="timed training steps per run (default 400)")
    parser.add_argument("--huge", action="store_true", help="also a ~25 GB file (32 M rows), larger than memory")
    parser.add_argument("--dir", type=Path, help="where to write the data files (default: a temporary folder)")
    parser.add_argument("--score", action="store_true", help="also write the 6 M rows as Parquet and run "
                        "'aekit score' on them (a model trained 1 epoch on 60 k rows): peak RssAnon, equality")
    parser.add_argument("--only-extras", action="store_true", help="skip the training runs (with --command/--score)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (median reported; default 2)")
    parser.add_argument("--command", action="store_true", help="also the whole 'aekit train --epochs 1' on 60 k and "
                        "6 M rows: its peak RssAnon, evaluation and PCA included (6 M: minutes)")  # fmt: skip
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="aekit-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [60_000, 600_000, 6_000_000] + ([32_000_000] if args.huge else [])
    try:
        rows = []
        for n in sizes:
            path = folder / f"rows-{n}.npy"
            if not path.exists():
                began = time.perf_counter()
                write_data(path, n)
                print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - began:.0f} s",
                      flush=True)  # fmt: skip
            modes = [] if args.only_extras else ["in memory", "streamed"] if n == sizes[0] else ["streamed"]
            for mode in modes:
                runs = [child(path, "memory" if mode == "in memory" else "streamed", args.steps)
                        for _ in range(args.repeats)]  # fmt: skip
                result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                rows.append((n, mode, result))
                print(f"{n:>11,} rows  {mode:<10} {result['rows_per_s']:>10,.0f} rows/s  peak RssAnon "
                      f"{result['peak_anon_mb']:>7,.0f} MB  loss {result['loss']:.4f}", flush=True)  # fmt: skip
        if rows:
            base = next(r for n, m, r in rows if m == "in memory")
            small = next(r for n, m, r in rows if m == "streamed" and n == sizes[0])
            big = next(r for n, m, r in rows if m == "streamed" and n == 6_000_000)
            print(f"\npeak RssAnon at 6 M streamed / 60 k in memory (what aekit train picks for each): "
                  f"{big['peak_anon_mb'] / base['peak_anon_mb']:.2f} (bar <= 1.2); 6 M / 60 k, both streamed: "
                  f"{big['peak_anon_mb'] / small['peak_anon_mb']:.2f}")
            print(f"rows/s at 6 M streamed / 60 k in memory: {big['rows_per_s'] / base['rows_per_s']:.2f} "
                  "(bar >= 0.8)")  # fmt: skip
        if args.command:
            small_peak, small_s = command_peak(folder / "rows-60000.npy", folder / "run-60k")
            big_peak, big_s = command_peak(folder / "rows-6000000.npy", folder / "run-6M")
            print(f"aekit train --epochs 1: 60 k rows (in memory) peak RssAnon {small_peak:,.0f} MB in {small_s:.0f} "
                  f"s; 6 M rows (streamed) {big_peak:,.0f} MB in {big_s:.0f} s; ratio {big_peak / small_peak:.2f} "
                  "(bar <= 1.2)")  # fmt: skip
        if args.score:
            for n in (60_000, 6_000_000):
                if not (folder / f"rows-{n}.parquet").exists():
                    write_parquet(folder / f"rows-{n}.npy", folder / f"rows-{n}.parquet")
            if not (folder / "run-60k" / "model.safetensors").exists():
                command_peak(folder / "rows-60000.npy", folder / "run-60k")
            score_check(folder / "run-60k", folder, folder / "scores.npy")
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
