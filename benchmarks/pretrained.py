"""The trained runs that ship with aekit (``aekit.run.pretrained``): make them, and check that they reproduce.

    python benchmarks/pretrained.py              # check: checksums, load and answer, the issue's timings, then
                                                 # retrain each from its manifest commands and compare
    python benchmarks/pretrained.py --no-retrain # everything but the retraining (about a minute)
    python benchmarks/pretrained.py --update     # train them into src/aekit/run/zoo/ and write the manifest

Each run is trained with the commands in ``RUNS`` (``runs/NAME`` stands for its folder), with ``AEKIT_THREADS`` fixed
so that the arithmetic is the same every time on one CPU; its optimizer checkpoint is left out (only ``--resume``
reads it, and a shipped run is finished: 5 MB of the chapter's 6.7). The check retrains each into a temporary folder and reports whether
the weights are the same bit for bit (on the CPU and thread count the manifest names they should be) or else
whether the headline metrics are within 1%.

The timings are the issue's bars, medians of 3 whole commands on this machine: ``aekit compress pretrained:codec
--input mnist --split test`` then ``aekit decompress`` (at most 20 s together), and ``aekit serve
pretrained:chapter`` until ``/v1/info`` answers (at most 15 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from aekit._version import __version__
from aekit.run.pretrained import MANIFEST, ZOO

THREADS = 2
AEKIT = [sys.executable, "-m", "aekit"]
RUNS = {
    "chapter": {
        "help": "the chapter's 784-256-32 autoencoder on MNIST (10 epochs), with a 10-component GMM prior to sample",
        "commands": ["aekit train --preset chapter --epochs 10 --seed 0 --out runs/chapter --no-progress",
                     "aekit fit-prior runs/chapter --prior gmm --seed 0 --no-progress"],
    },
    "codec": {
        "help": "the codec preset for aekit compress / decompress: a 32-D integer code under a learned entropy model",
        "commands": ["aekit train --preset codec --seed 0 --out runs/codec --no-progress"],
    },
    "conv30": {
        "help": "convolutional, 30-D code, 40 epochs: under Hinton 2006's 3.00 SSE/image",
        "commands": ["aekit train --preset conv30 --seed 0 --out runs/conv30 --no-progress"],
    },
}
LEFT_OUT = {"checkpoint.safetensors"}  # the optimizer's state: only --resume reads it


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def headline(name: str, metrics: dict) -> str:
    if name == "codec":
        return (f"{metrics['rate_bits_tables'] / 8:.1f} B/digit at {metrics['psnr']:.1f} dB PSNR (PCA coding at that "
                f"rate: {metrics['pca_coding_psnr']:.1f} dB), MNIST test set")  # fmt: skip
    return (f"test SSE/image {metrics['test_sse_per_image']:.3f} beside PCA-{metrics['pca_components']}'s "
            f"{metrics['pca_test_sse_per_image']:.3f} (MNIST test set)")  # fmt: skip


def key_metrics(name: str, metrics: dict) -> dict:
    keys = ("rate_bits_tables", "psnr") if name == "codec" else ("test_sse_per_image", "pca_test_sse_per_image")
    return {k: metrics[k] for k in keys}


def train(name: str, out: Path) -> float:
    """Run ``name``'s commands into ``out``; returns the seconds they took."""
    env = {**os.environ, "AEKIT_THREADS": str(THREADS)}
    start = time.perf_counter()
    for command in RUNS[name]["commands"]:
        argv = [str(out) if arg == f"runs/{name}" else arg for arg in shlex.split(command)[1:]]
        subprocess.run([*AEKIT, *argv], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def update() -> None:
    ZOO.mkdir(exist_ok=True)
    runs = {}
    for name in RUNS:
        out = ZOO / name
        shutil.rmtree(out, ignore_errors=True)
        seconds = train(name, out)
        for item in LEFT_OUT:
            (out / item).unlink(missing_ok=True)
        files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(out.rglob("*")) if p.is_file()}  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())
        runs[name] = {"help": RUNS[name]["help"], "headline": headline(name, metrics), "commands": RUNS[name]["commands"],
                      "seed": 0, "threads": THREADS, "cpu": cpu_name(), "aekit_version": __version__,
                      "train_seconds": round(seconds, 1), "metrics": key_metrics(name, metrics), "files": files}  # fmt: skip
        print(f"{name}: trained in {seconds:.0f} s; {runs[name]['headline']}; "
              f"{sum((out / f).stat().st_size for f in files) / 1e6:.2f} MB")  # fmt: skip
    MANIFEST.write_text(json.dumps({"format": "aekit-pretrained/1", "runs": runs}, indent=2) + "\n")
    print(f"wrote {MANIFEST}")


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def retrain(manifest: dict) -> bool:
    ok = True
    print(f"\nretraining from the manifest's commands (AEKIT_THREADS={THREADS}) on {cpu_name()}")
    print(f"{'run':<8}{'seconds':>9}  {'weights':<24}{'metric':<24}{'shipped':>10}{'retrained':>11}{'diff':>8}")
    for name, entry in manifest["runs"].items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / name
            seconds = train(name, out)
            metrics = json.loads((out / "metrics.json").read_text())
            same = same_weights(ZOO / name / "model.safetensors", out / "model.safetensors")
            weights = "bit for bit" if same else ("differ (other CPU)" if entry["cpu"] != cpu_name() else "DIFFER")
            for key, shipped in entry["metrics"].items():
                diff = abs(metrics[key] - shipped) / abs(shipped)
                ok &= same or diff <= 0.01
                print(f"{name:<8}{seconds:>9.0f}  {weights:<24}{key:<24}{shipped:>10.4f}{metrics[key]:>11.4f}"
                      f"{diff:>8.2%}")  # fmt: skip
    return ok


def median_seconds(argv: list[str], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([*AEKIT, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def serve_seconds() -> float:
    """Seconds from starting ``aekit serve pretrained:chapter`` to its ``/v1/info`` answering."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([*AEKIT, "serve", "pretrained:chapter", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while time.perf_counter() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=1) as answer:
                    json.load(answer)
                    return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise SystemExit("aekit serve pretrained:chapter did not answer /v1/info in 120 s")
    finally:
        server.terminate()
        server.wait()


def check(manifest: dict) -> bool:
    import aekit

    ok = True
    print(f"{'run':<8}{'files':>6}{'MB':>7}  load + evaluate beside the manifest's metrics")
    for name, entry in manifest["runs"].items():
        size = sum((ZOO / name / f).stat().st_size for f in entry["files"]) / 1e6
        metrics = aekit.pretrained(name).evaluate(write=False, analysis=False)
        if name == "codec":
            from aekit.codec.metrics import codec_metrics

            run = aekit.pretrained(name)
            metrics |= codec_metrics(run.model, run.data(), run.codec.tables)
        diffs = {k: abs(metrics[k] - v) / abs(v) for k, v in entry["metrics"].items()}
        ok &= max(diffs.values()) <= 1e-6
        print(f"{name:<8}{len(entry['files']):>6}{size:>7.2f}  {headline(name, metrics)}; largest difference "
              f"{max(diffs.values()):.1e}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        aek, npy = Path(tmp) / "t.aek", Path(tmp) / "d.npy"
        compress = median_seconds(["compress", "pretrained:codec", "--input", "mnist", "--split", "test", "--out",
                                   str(aek)])  # fmt: skip
        decompress = median_seconds(["decompress", "pretrained:codec", str(aek), "--out", str(npy)])
        n = len(np.load(npy))
        print(f"\ncompress + decompress of the {n} test digits: {compress:.1f} + {decompress:.1f} = "
              f"{compress + decompress:.1f} s (bar: 20 s); {aek.stat().st_size / n:.2f} B/digit")  # fmt: skip
        ok &= compress + decompress <= 20
    served = statistics.median(serve_seconds() for _ in range(3))
    print(f"aekit serve pretrained:chapter answers /v1/info after {served:.1f} s (bar: 15 s)")
    ok &= served <= 15
    total = sum(p.stat().st_size for p in ZOO.rglob("*") if p.is_file()) / 1e6
    print(f"the shipped runs: {total:.2f} MB in the package (bar: 10 MB)")
    return ok and total <= 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="train the runs into the package, write the manifest")
    parser.add_argument("--no-retrain", action="store_true", help="skip retraining (checks and timings only)")
    args = parser.parse_args()
    if args.update:
        update()
        return 0
    print(f"aekit {__version__}; {cpu_name()}, {os.cpu_count()} cores\n")
    manifest = json.loads(MANIFEST.read_text())
    ok = check(manifest)
    if not args.no_retrain:
        ok &= retrain(manifest)
    print("\nall bars met" if ok else "\nSOME BARS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
