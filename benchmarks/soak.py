"""A bounded soak of ``aekit serve``: concurrent clients on loopback, a fixed number of requests, the server's memory.

The server is ``aekit serve RUN`` in its own process on a free 127.0.0.1 port. After a warm-up, ``--clients`` threads each send ``--requests`` requests over one kept-alive connection,
cycling through: ``/v1/score`` with 64 JSON rows, ``/v1/score`` with 256 rows as a ``.npy`` body, ``/v1/encode``, a
bad request (wrong width: a 422) and ``/v1/explore/samples``. Prints requests/s, p50 and p99 latency, every status
seen (a 5xx is a failure), and the server's resident memory after the warm-up (as many clients at once, 50 requests
each: the server's thread pool and each thread's buffers are then in place), halfway and at the end: memory must be
flat after warm-up. Run: ``python benchmarks/soak.py [RUN] [--clients 16] [--requests 200]`` (default RUN: the
chapter model trained for one epoch into a temporary folder).
"""

from __future__ import annotations

import argparse
import collections
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx  # from aekit's test extra
import numpy as np

import aekit


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests_for(rows: np.ndarray):
    """The cycle of (method, path, keyword arguments, expected status) each client sends."""
    npy = io.BytesIO()
    np.save(npy, rows[:256].astype(np.float32))
    return [
        ("post", "/v1/score", {"json": {"inputs": rows[:64].tolist()}}, 200),
        ("post", "/v1/score", {"content": npy.getvalue(), "headers": {"content-type": "application/x-npy"}}, 200),
        ("post", "/v1/encode", {"json": {"inputs": rows[:16].tolist()}}, 200),
        ("post", "/v1/score", {"json": {"inputs": [[0.5, 0.5]]}}, 422),
        ("get", "/v1/explore/samples?n=8&seed=3", {}, 200),
    ]


def client(base: str, cycle, n: int, latencies: list, statuses: collections.Counter, lock: threading.Lock) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for i in range(n):
            method, path, kwargs, _ = cycle[i % len(cycle)]
            began = time.perf_counter()
            status = getattr(http, method)(path, **kwargs).status_code
            with lock:
                latencies.append(time.perf_counter() - began)
                statuses[status] += 1


def round_of(clients: int, base: str, cycle, n: int, latencies: list, statuses, lock) -> None:
    """``clients`` threads at once, ``n`` requests each."""
    threads = [threading.Thread(target=client, args=(base, cycle, n, latencies, statuses, lock)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a run directory (default: train one for one epoch)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run = args.run or Path(folder) / "run"
        if args.run is None:
            aekit.train_run(run, train_config=aekit.TrainConfig(epochs=1), progress=False, analysis=False)
        rows = aekit.load_run(run).data().x_test[:256].reshape(256, -1).numpy()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "aekit", "serve", str(run), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        base, cycle = f"http://127.0.0.1:{port}", requests_for(rows)
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            lock, warm = threading.Lock(), collections.Counter()
            round_of(args.clients, base, cycle, 50, [], warm, lock)  # warm-up: as many clients, 50 requests each
            memory = [("after warm-up", rss_mb(server.pid))]
            latencies, statuses = [], collections.Counter()
            began = time.perf_counter()
            for what in ("halfway", "at the end"):
                round_of(args.clients, base, cycle, args.requests // 2, latencies, statuses, lock)
                memory.append((what, rss_mb(server.pid)))
            seconds = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(timeout=30)
    total = len(latencies)
    ordered = sorted(latencies)
    print(f"{args.clients} clients x {args.requests} requests on loopback ({total} in {seconds:.1f} s): "
          f"{total / seconds:.0f} requests/s; latency p50 {1000 * statistics.median(ordered):.1f} ms, "
          f"p99 {1000 * ordered[int(0.99 * (total - 1))]:.1f} ms")  # fmt: skip
    print("statuses: " + ", ".join(f"{code} x{count}" for code, count in sorted(statuses.items()))
          + ("" if all(code < 500 for code in statuses) else "  <- a 5xx: a failure"))  # fmt: skip
    print("server memory (VmRSS): " + ", ".join(f"{what} {mb:.0f} MB" for what, mb in memory)
          + f"; growth after warm-up {memory[-1][1] - memory[0][1]:+.0f} MB ({memory[-1][1] / memory[0][1]:.3f}x)")


if __name__ == "__main__":
    main()
