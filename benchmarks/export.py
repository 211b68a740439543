"""Rows per second of an exported ONNX graph under onnxruntime against the same model in torch.

Trains (or loads) a run, exports its encoder and its score graph, and times encode and score on MNIST's test
images in batches, alternating torch and onnxruntime rounds; prints rows/s of each and the ratio, and checks
that both give the same numbers. Needs the 'onnx' extra. Run: ``python benchmarks/export.py [--run RUN]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aekit
from aekit.configs import TrainConfig
from aekit.core.export import Exported, export_onnx


def rows_per_second(fn, x: np.ndarray, batch: int, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        began = time.perf_counter()
        for start in range(0, len(x), batch):
            fn(x[start : start + batch])
        out.append(len(x) / (time.perf_counter() - began))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run to export (default: train the chapter's model 2 epochs)")
    parser.add_argument("--batch", type=int, default=1024, help="rows per call (default 1024)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    args = parser.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        run_path = args.run
        if run_path is None:
            run_path = Path(tmp) / "run"
            aekit.train_run(run_path, aekit.ModelConfig(latent_dim=32), train_config=TrainConfig(epochs=2),
                            progress=False, overwrite=True)  # fmt: skip
        run = aekit.load_run(run_path)
        x = run.data().x_test.numpy()
        if run.space.scaler is not None:
            x = run.space.scaler.inverse_transform(torch.from_numpy(x)).numpy()  # the graphs take raw rows
        print(f"{run_path}: {run.model_config.name}, {len(x)} test rows, batch {args.batch}, "
              f"torch threads {torch.get_num_threads()}")  # fmt: skip
        print(f"{'part':<8}{'torch rows/s':>14}{'onnxruntime rows/s':>20}{'ratio':>8}{'max |diff|':>12}")
        for part in ("encoder", "score"):
            path = export_onnx(run.model, run.space.scaler, Path(tmp) / f"{part}.onnx", part)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            module = Exported(run.model, run.space.scaler, part)
            name = session.get_inputs()[0].name

            @torch.no_grad()
            def with_torch(rows, module=module):
                return module(torch.from_numpy(rows)).numpy()

            def with_onnx(rows, session=session, name=name):
                return session.run(None, {name: rows})[0]

            diff = float(np.abs(with_torch(x[:1000]) - with_onnx(x[:1000])).max())
            torch_rates, onnx_rates = [], []
            for _ in range(args.rounds):
                torch_rates += rows_per_second(with_torch, x, args.batch, 1)
                onnx_rates += rows_per_second(with_onnx, x, args.batch, 1)
            t, o = statistics.median(torch_rates), statistics.median(onnx_rates)
            print(f"{part:<8}{t:>14,.0f}{o:>20,.0f}{o / t:>8.2f}{diff:>12.2e}")


if __name__ == "__main__":
    main()
