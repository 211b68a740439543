"""Imputation of values missing completely at random: aekit's imputer beside scikit-learn's and PCA's.

    python benchmarks/impute.py [--rates 0.1,0.3,0.5] [--mnist-rows 10000] [--only tables|mnist|mixed|heldout|cli]

Tables that ship offline (scikit-learn's bundled breast cancer, wine, diabetes and 8x8 digits), each feature
standardized on the whole table so that every feature counts alike in the RMSE, and MNIST pixels (the first
``--mnist-rows`` training images, pixels in [0, 1], as they come). For each missing share a mask is drawn (seed 0)
and every method fills the same holes of the same table (fit and transform on it, as an imputer is used); RMSE is
over the removed values. Methods: ``SimpleImputer(mean)``, ``KNNImputer()`` (5 neighbours), ``IterativeImputer``
(``max_iter=10``; on MNIST's 784 columns ``n_nearest_features=50, max_iter=3``, or it takes hours), PCA imputation
(iterated: fill with the means, fit PCA, replace the holes by the reconstruction, 20 times; half the features as
components, at most 50), and ``aekit.AutoEncoderImputer(random_state=0)`` with its defaults (``scale="auto"``: pixels,
and any data already in [0, 1], are kept as they are; other features standardized).

Held out (``--only heldout``): fitted on ``--mnist-rows`` complete training images, then filling 2,000 test images with
30% of their pixels missing (scikit-learn's ``KNNImputer`` and the mean beside aekit's defaults).

The command line (``--only cli``): scikit-learn's 8x8 digits (pixels / 16, in [0, 1]) with 30% of them missing,
saved as a ``.npy`` with NaN holes; ``aekit train --data holes.npy`` (nothing else given: a file with holes trains the
impute objective with the imputer's defaults) then ``aekit impute RUN --input holes.npy``, beside
``AutoEncoderImputer(random_state=0).fit_transform`` and ``KNNImputer`` on the same holes.

Categorical cells: a table the benchmark builds from the bundled wine data, its 13 measurements and the cultivar
(the class label, as the text ``class_0``, ``class_1``, ``class_2``) as a categorical column, written to CSV with
empty cells where values were removed. aekit trains a run on that CSV (the table reader: a softmax head and
cross-entropy for the cultivar, 200 epochs, the imputer's widths; one row held out, as a run always holds out a
test split) and fills it with ``Run.impute``; scikit-learn's imputers fill the same table with the cultivar one-hot
(NaN where removed; its filled category is the largest slot), the mean imputer with the most frequent category.
Accuracy is over the removed cultivar cells, RMSE over the removed measurements (standardized as above).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (IterativeImputer is experimental)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from aekit.data.datasets import load_mnist_arrays, read_data
from aekit.faces.imputer import AutoEncoderImputer

SKLEARN = ("mean", "knn", "iterative")


class PCAImputer:
    """Iterated PCA reconstruction of the holes (the classic "SVD impute")."""

    def __init__(self, n_components: int, iterations: int = 20):
        self.n_components, self.iterations = n_components, iterations

    def fit_transform(self, x):
        holes = np.isnan(x)
        filled = np.where(holes, np.nanmean(x, axis=0), x)
        for _ in range(self.iterations):
            pca = PCA(self.n_components, random_state=0).fit(filled)
            filled = np.where(holes, pca.inverse_transform(pca.transform(filled)), x)
        return filled


def methods(n_features: int, pixels: bool) -> dict:
    iterative = dict(n_nearest_features=50, max_iter=3) if pixels else dict(max_iter=10)
    return {"mean": SimpleImputer(), "knn": KNNImputer(), "iterative": IterativeImputer(random_state=0, **iterative),
            "pca": PCAImputer(min(50, max(1, n_features // 2))),
            "aekit": AutoEncoderImputer(random_state=0)}  # the defaults: pixels in [0, 1] are kept as they are  # fmt: skip


def tables(mnist_rows: int, only: str | None) -> dict:
    out = {}
    if only in (None, "tables"):
        for name, loader in (("breast_cancer", load_breast_cancer), ("wine", load_wine), ("diabetes", load_diabetes),
                             ("digits", load_digits)):  # fmt: skip
            x = loader().data.astype(np.float64)
            std = x.std(axis=0)
            out[name] = ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), False)
    if only in (None, "mnist"):
        images, _ = load_mnist_arrays(train=True)
        out["mnist"] = (images[:mnist_rows].reshape(mnist_rows, -1).astype(np.float64) / 255.0, True)
    return out


def mixed_wine(rate: float, folder) -> dict[str, tuple[float, float, float]]:
    """Each method's (RMSE on the removed measurements, accuracy on the removed cultivars, seconds) on the wine
    table with its cultivar as a categorical column."""
    import csv

    import aekit

    bunch = load_wine()
    x, cultivar = bunch.data.astype(np.float64), bunch.target
    mean, std = x.mean(axis=0), x.std(axis=0)
    holes = np.random.default_rng(0).random((len(x), x.shape[1] + 1)) < rate
    holes[holes.all(axis=1), 0] = False
    path = folder / f"wine-{rate}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*bunch.feature_names, "cultivar"])
        for i in range(len(x)):
            writer.writerow(["" if holes[i, j] else repr(float(v)) for j, v in enumerate(x[i])] +
                            ["" if holes[i, -1] else f"class_{cultivar[i]}"])  # fmt: skip
    numeric_holes, category_holes = holes[:, :-1], holes[:, -1]
    one_hot = np.eye(3)[cultivar]
    with_holes = np.column_stack([np.where(numeric_holes, np.nan, (x - mean) / std),
                                  np.where(category_holes[:, None], np.nan, one_hot)])  # fmt: skip
    out = {}

    def measure(name, numeric, classes, began):
        rmse = float(np.sqrt(((numeric - (x - mean) / std)[numeric_holes] ** 2).mean()))
        out[name] = (rmse, float((classes[category_holes] == cultivar[category_holes]).mean()),
                     time.perf_counter() - began)  # fmt: skip

    for method, imputer in methods(with_holes.shape[1], False).items():
        if method == "aekit":
            continue
        began = time.perf_counter()
        filled = imputer.fit_transform(with_holes)
        classes = filled[:, -3:].argmax(1)
        if method == "mean":  # the mean of a one-hot block is the shares: its largest slot is the most frequent
            classes = np.full(len(x), np.nanmean(with_holes[:, -3:], axis=0).argmax())
        measure(method, filled[:, :-3], classes, began)
    began = time.perf_counter()
    config = aekit.make_config(objective="impute", latent_dim=7, hidden=(256, 128))
    aekit.train_run(folder / f"run-{rate}", config, aekit.DataConfig(name=str(path), test_fraction=0.005),
                    aekit.TrainConfig(epochs=200, device="cpu"), progress=False, analysis=False)  # fmt: skip
    run = aekit.load_run(folder / f"run-{rate}")
    raw = read_data(str(path), run.data_config.label_column, columns=run.model_config.columns)[0]
    filled = run.impute(raw)
    measure("aekit", (filled[:, :-3] - mean) / std, filled[:, -3:].argmax(1), began)
    return out


def heldout(mnist_rows: int, rate: float = 0.3, n_test: int = 2000) -> None:
    """Fit on complete training images, fill held-out test images with ``rate`` of their pixels missing."""
    images, _ = load_mnist_arrays(train=True)
    test, _ = load_mnist_arrays(train=False)
    x = images[:mnist_rows].reshape(mnist_rows, -1) / 255.0
    t = test[:n_test].reshape(n_test, -1) / 255.0
    hidden = np.random.default_rng(0).random(t.shape) < rate
    print(f"\nheld out: fitted on {mnist_rows} MNIST training images, filling {n_test} test images with {rate:.0%} of "
          "their pixels missing (RMSE on those pixels)")  # fmt: skip
    for name, imputer in (("mean", SimpleImputer()), ("knn", KNNImputer()),
                          ("aekit (defaults)", AutoEncoderImputer(random_state=0))):  # fmt: skip
        began = time.perf_counter()
        filled = imputer.fit(x).transform(np.where(hidden, np.nan, t))
        rmse = float(np.sqrt(((filled - t)[hidden] ** 2).mean()))
        print(f"  {name:<18}{rmse:>8.4f}   {time.perf_counter() - began:.0f} s", flush=True)


def command_line(rate: float = 0.3) -> None:
    """``aekit train`` + ``aekit impute`` on the digits with holes, beside the imputer's defaults and KNN."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    x = load_digits().data / 16.0
    holes = np.random.default_rng(0).random(x.shape) < rate
    with_holes = np.where(holes, np.nan, x)
    rmse = lambda filled: float(np.sqrt(((filled - x)[holes] ** 2).mean()))  # noqa: E731
    print(f"\nthe command line: digits / 16 ({x.shape[0]}x{x.shape[1]}), {rate:.0%} missing, RMSE on the holes")
    with tempfile.TemporaryDirectory() as folder:
        data, run, out = Path(folder) / "holes.npy", Path(folder) / "run", Path(folder) / "filled.npy"
        np.save(data, with_holes)
        began = time.perf_counter()
        for argv in (["train", "--data", str(data), "--out", str(run), "--no-progress"],
                     ["impute", str(run), "--input", str(data), "--out", str(out)]):  # fmt: skip
            subprocess.run([sys.executable, "-m", "aekit", *argv], check=True, capture_output=True)
        cli = rmse(np.load(out))
        cli_seconds = time.perf_counter() - began
    began = time.perf_counter()
    imputer = rmse(AutoEncoderImputer(random_state=0).fit_transform(with_holes))
    imputer_seconds = time.perf_counter() - began
    print(f"  {'aekit train + impute':<28}{cli:>8.4f}   {cli_seconds:.0f} s")
    print(f"  {'AutoEncoderImputer()':<28}{imputer:>8.4f}   {imputer_seconds:.0f} s")
    print(f"  {'KNNImputer()':<28}{rmse(KNNImputer().fit_transform(with_holes)):>8.4f}")
    print(f"  command line / imputer: {cli / imputer:.3f} (the bar: at most 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0.1,0.3,0.5")
    parser.add_argument("--mnist-rows", type=int, default=10_000)
    parser.add_argument("--only", choices=("tables", "mnist", "mixed", "heldout", "cli"), help="tables: the four tables "
                        "and the mixed one; mixed: only the mixed one; heldout: MNIST fitted on training images, "
                        "filling test images; cli: aekit train + aekit impute beside the imputer")  # fmt: skip
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # IterativeImputer's convergence warnings, the AE's overcomplete note
    rates = [float(r) for r in args.rates.split(",")]
    if args.only == "cli":
        command_line()
        return
    names = ("mean", "knn", "iterative", "pca", "aekit")
    print(f"{'table':<14}{'rows x cols':>12}{'missing':>8}" + "".join(f"{n:>11}" for n in names)
          + f"{'aekit/best sklearn':>20}   seconds " + "/".join(names))  # fmt: skip
    ratios = {}
    for name, (x, pixels) in (tables(args.mnist_rows, args.only) if args.only != "heldout" else {}).items():
        for rate in rates:
            holes = np.random.default_rng(0).random(x.shape) < rate
            holes[holes.all(axis=1), 0] = False  # every row keeps a value
            with_holes = np.where(holes, np.nan, x)
            errors, seconds = {}, {}
            for method, imputer in methods(x.shape[1], pixels).items():
                start = time.perf_counter()
                filled = imputer.fit_transform(with_holes)
                seconds[method] = time.perf_counter() - start
                errors[method] = float(np.sqrt(((filled - x)[holes] ** 2).mean()))
            best = min(errors[m] for m in SKLEARN)
            ratios[(name, rate)] = errors["aekit"] / best
            print(f"{name:<14}{f'{x.shape[0]}x{x.shape[1]}':>12}{rate:>8.0%}" + "".join(f"{errors[n]:>11.4f}" for n in names)
                  + f"{ratios[(name, rate)]:>20.3f}   " + "/".join(f"{seconds[n]:.1f}" for n in names), flush=True)  # fmt: skip
    table_ratios = [r for (name, _), r in ratios.items() if name != "mnist"]
    if table_ratios:
        print(f"\nthe four tables: aekit's RMSE / the best scikit-learn imputer's, mean over tables and rates: "
              f"{np.mean(table_ratios):.3f} (the bar: at most 1.05)")  # fmt: skip
    if args.only in (None, "tables", "mixed"):
        import tempfile
        from pathlib import Path

        print("\nwine with its cultivar as a categorical column: RMSE on the removed measurements / accuracy on the "
              "removed cultivars (mean: the most frequent cultivar)")  # fmt: skip
        print(f"{'missing':>8}" + "".join(f"{n:>18}" for n in names) + "   seconds " + "/".join(names))
        with tempfile.TemporaryDirectory() as folder:
            for rate in rates:
                result = mixed_wine(rate, Path(folder))
                print(f"{rate:>8.0%}" + "".join(f"{result[n][0]:>11.4f} / {result[n][1]:.2f}" for n in names) +
                      "   " + "/".join(f"{result[n][2]:.1f}" for n in names), flush=True)  # fmt: skip
    if args.only in (None, "heldout"):
        heldout(args.mnist_rows)
    for (name, rate), ratio in ratios.items():
        if name == "mnist":
            print(f"mnist at {rate:.0%} missing: aekit / best scikit-learn imputer {ratio:.3f} (the bar at 30% and 50%: "
                  "below 1)")  # fmt: skip


if __name__ == "__main__":
    main()
