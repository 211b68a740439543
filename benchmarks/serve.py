"""Rows per second of ``POST /v1/score`` over HTTP beside the same model called in-process, in one run.

The server is ``aekit serve`` in its own process on a loopback port; the client keeps one connection open.
In-process means what the handler itself computes for a batch already in memory (rows in the data's units ->
model space -> scores), without HTTP or parsing. Bodies are JSON (``{"inputs": [[...], ...]}``) or a ``.npy``
array (``Content-Type: application/x-npy``). Batches of 1 and 1,024 MNIST test rows.
Run: ``python benchmarks/serve.py [RUN]`` (default: trains the chapter model for one epoch into a temp folder).
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx  # the maintained fork of httpx (same API); from aekit's test extra
import numpy as np

import aekit
from aekit.faces.serve import Explorer


def timed(fn, seconds: float = 3.0) -> float:
    """Calls per second of ``fn``, after a warm-up, over about ``seconds``."""
    for _ in range(3):
        fn()
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a run directory (default: train one, 1 epoch)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run = args.run
        if run is None:
            run = Path(folder) / "run"
            aekit.train_run(run, train_config=aekit.TrainConfig(epochs=1), progress=False, analysis=False)
        loaded = aekit.load_run(run)
        rows = loaded.data().x_test[:1024].reshape(1024, -1).numpy().astype(np.float64)
        explorer = Explorer.from_run(loaded, map_points=100)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "aekit", "serve", str(run), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                deadline = time.time() + 60
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        if time.time() > deadline:
                            raise
                        time.sleep(0.2)
                print(f"/v1/score, {loaded.model_config.name} model, {rows.shape[1]} features, "
                      f"{args.seconds:g} s per measurement")  # fmt: skip
                print(f"{'batch':>6}{'body':>7}{'in-process rows/s':>20}{'HTTP rows/s':>14}{'HTTP / in-process':>19}")
                for batch in (1, 1024):
                    x = rows[:batch]
                    local = timed(lambda: explorer.score(x), args.seconds) * batch
                    as_json = json.dumps({"inputs": x.tolist()})
                    buffer = io.BytesIO()
                    np.save(buffer, x.astype(np.float32))
                    bodies = {"json": (as_json, "application/json"), "npy": (buffer.getvalue(), "application/x-npy")}
                    for name, (body, kind) in bodies.items():
                        def call():
                            response = http.post("/v1/score", content=body, headers={"content-type": kind})
                            assert response.status_code == 200, response.text

                        remote = timed(call, args.seconds) * batch
                        print(f"{batch:>6}{name:>7}{local:>20,.0f}{remote:>14,.0f}{remote / local:>19.2f}")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
