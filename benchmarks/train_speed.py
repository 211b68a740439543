"""Seconds per epoch of aekit's training loop against a bare loop and the machine's matmul limit.

Trains the ``chapter`` preset (784-256-32, Adam, lr 1e-3, batch 128, MSE) on MNIST:

- bare: the shortest correct loop over preloaded tensors (same model, optimizer, batch size), nothing else;
- aekit: ``aekit.training.loop.train`` with its progress bar, per-epoch test evaluation and checkpointing on;
- limit: the FLOPs of one epoch divided by the fp32 matmul rate torch reaches here, measured in this run.

Rounds alternate (bare, aekit, bare, aekit, ...) so that a noisy neighbour hurts both alike; the median
seconds per epoch of each is reported, with the ratios. Run: ``python benchmarks/train_speed.py``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import aekit
from aekit.configs import TrainConfig
from aekit.data import datasets as data_mod
from aekit.run.rundir import RunCheckpoints, RunDir
from aekit.training.loop import squared_errors, train


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_epoch(model, optimizer, x, batch_size, seed) -> float:
    sync(x.device)
    began = time.perf_counter()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    for start in range(0, len(x), batch_size):
        xb = x[order[start : start + batch_size]]
        loss = F.mse_loss(model(xb), xb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(x.device)
    return time.perf_counter() - began


def matmul_gflops(device: torch.device, seconds: float = 2.0) -> float:
    """Sustained fp32 matmul rate (GFLOP/s) of torch on ``device``, from 1024x1024 (CPU) or 8192x8192 products."""
    n = 1024 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
        if count % 10 == 0:
            sync(device)
    sync(device)
    return 2 * n**3 * count / (time.perf_counter() - began) / 1e9


def epoch_flops(model: aekit.AutoEncoder, n: int) -> float:
    """Matmul FLOPs of one epoch: forward 2, backward 4 per weight and example (input grads of layer 1 skipped)."""
    weights = [m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    first = weights[0]
    return n * (6 * sum(weights) - 2 * first)


MEMORY_PROBE = """
import sys, tempfile, torch, aekit
from aekit.run.rundir import RunCheckpoints, RunDir
from aekit.training.loop import TrainConfig, train
if sys.argv[1] == "mnist":
    data = aekit.data.datasets.load(aekit.DataConfig(name="mnist"))
else:  # the framework alone: same imports, model, optimizer and loop, on 1,000 random images
    data = aekit.Data(torch.rand(1000, 1, 28, 28), torch.rand(100, 1, 28, 28))
with tempfile.TemporaryDirectory() as run:
    train(aekit.AutoEncoder(), data, TrainConfig(epochs=1, device="cpu"), checkpoints=RunCheckpoints(RunDir(run)), progress=False)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
print(int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024)
"""


def peak_rss_mb(what: str) -> float:
    """Peak resident memory (MB) of a fresh process training one epoch on ``what`` ("mnist" or "framework")."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, what], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def profile_step(data, steps: int = 200) -> None:
    """Where one training step of aekit's loop spends its time, grouped: matmuls, optimizer, the rest."""
    from torch.profiler import ProfilerActivity, profile

    from aekit.training.loop import LossModule
    from aekit.training.optim import AdamStep, make_optimizer

    torch.manual_seed(0)
    model = aekit.AutoEncoder()
    objective, optimizer = LossModule(model, "mse"), make_optimizer("adam", model.parameters(), TrainConfig().lr)
    step = AdamStep(optimizer)
    order = torch.randperm(len(data.x_train))

    def run(n):
        for i in range(n):
            xb = data.x_train.index_select(0, order[i * 128 : (i + 1) * 128])
            loss, _ = objective(xb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step()

    run(20)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    groups: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key
        group = ("matmul (mm, addmm)" if name in ("aten::mm", "aten::addmm") else
                 "optimizer (fused Adam kernel)" if name in ("aten::_fused_adam_", "aten::_foreach_add_") else
                 "batch gather (index_select)" if name == "aten::index_select" else "everything else")  # fmt: skip
        groups[group] = groups.get(group, 0.0) + event.self_cpu_time_total
    total = sum(groups.values())
    print(f"\nprofile of aekit's step ({steps} steps, {total / steps / 1000:.2f} ms/step under the profiler):")
    for group, micros in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<32}{micros / steps / 1000:>7.3f} ms  {100 * micros / total:>5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each (default 2)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide aekit's progress bar")
    parser.add_argument("--profile", action="store_true", help="also profile one step of aekit's loop")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda; both loops run there")
    args = parser.parse_args()

    device = torch.device(args.device)
    data = data_mod.load(data_mod.DataConfig(name="mnist"))
    x = data.x_train.to(device)
    config = TrainConfig(epochs=args.epochs, device=args.device)
    bare_times, aekit_times, sse = [], [], {"bare": [], "aekit": []}
    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        model = aekit.AutoEncoder().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(args.epochs):
            bare_times.append(bare_epoch(model, optimizer, x, 128, seed=epoch))
        sse["bare"].append(float(squared_errors(model, data.x_test).mean()))

        torch.manual_seed(round_)
        model = aekit.AutoEncoder()
        with tempfile.TemporaryDirectory() as run:
            began = time.perf_counter()
            history = train(model, data, config, checkpoints=RunCheckpoints(RunDir(run)), progress=args.progress)
            aekit_times.append((time.perf_counter() - began) / args.epochs)  # includes eval and checkpoints
        sse["aekit"].append(history[-1]["test_sse_per_image"])

    gflops = matmul_gflops(device)
    limit = epoch_flops(aekit.AutoEncoder(), len(x)) / (gflops * 1e9)
    bare, ours = statistics.median(bare_times), statistics.median(aekit_times)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"threads: {torch.get_num_threads()}"
    print(f"{where}  matmul: {gflops:.0f} GFLOP/s  epoch: "
          f"{epoch_flops(aekit.AutoEncoder(), len(x)) / 1e9:.0f} GFLOP")  # fmt: skip
    print(f"{'':<10}{'s/epoch':>10}{'vs bare':>10}{'% of limit':>12}{'test SSE':>10}")
    for name, seconds, key in (("limit", limit, None), ("bare", bare, "bare"), ("aekit", ours, "aekit")):
        final = f"{statistics.mean(sse[key]):>10.3f}" if key else ""
        print(f"{name:<10}{seconds:>10.3f}{seconds / bare:>10.3f}{100 * limit / seconds:>11.1f}%{final}")
    print(f"aekit / bare = {ours / bare:.3f}  (core bar: <= 1.10; performance goal: <= 0.75)")
    drift = abs(statistics.mean(sse["aekit"]) / statistics.mean(sse["bare"]) - 1)
    print(f"final test SSE differs from the bare loop's by {100 * drift:.1f}% (goal: within 2%)")

    if args.profile:
        profile_step(data)

    if not args.skip_memory and device.type == "cpu":
        framework, peak = peak_rss_mb("framework"), peak_rss_mb("mnist")
        dataset = x.numel() * 4 / 2**20
        print(f"peak RSS: {peak:.0f} MB training on MNIST; framework alone {framework:.0f} MB; training set "
              f"{dataset:.0f} MB; bound 2 x data + framework = {2 * dataset + framework:.0f} MB "
              f"({'within' if peak <= 2 * dataset + framework else 'OVER'})")  # fmt: skip


if __name__ == "__main__":
    main()
