"""Runs written by aekit at commit 618f972 (version 0.2.0), with the numbers that release gave for them: later
releases must load them and give the same (tests/test_checkpoint.py). Run in an empty folder with that release
installed; then table.npy was copied into v2-table and its config's data name made relative ("table.npy", as a run
trained with --data table.npy stored it then), and the two folders renamed v2-618f972-*."""
import numpy as np
from aekit.cli import main

rng = np.random.default_rng(0)
table = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, 6)) * [1, 10, 100, 0.1, 5, 3] + 40).astype(np.float32)
np.save("table.npy", table)
assert main(["train", "--data", "table.npy", "--latent-dim", "2", "--hidden", "8", "--epochs", "3", "--batch-size", "32",
             "--no-progress", "--device", "cpu", "--latent-distance", "--out", "v2-table"]) == 0
assert main(["train", "--data", "digits", "--latent-dim", "3", "--hidden", "16", "--epochs", "2", "--no-progress",
             "--device", "cpu", "--out", "v2-digits"]) == 0
assert main(["fit-prior", "v2-digits", "--prior", "gaussian"]) == 0
np.save("v2-table/rows.npy", table[:20])
for run in ("v2-table", "v2-digits"):
    rows = "v2-table/rows.npy" if run == "v2-table" else "digits"
    assert main(["encode", run, "--input", rows, "--out", f"{run}/expected-codes.npy"]) == 0
    assert main(["score", run, "--input", rows, "--out", f"{run}/expected-scores.npy"]) == 0
    assert main(["reconstruct", run, "--input", rows, "--out", f"{run}/expected-reconstructions.npy"]) == 0
