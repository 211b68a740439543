"""Anomalies in time series: aekit's defaults beside the classical detectors, on real series that ship inside aeon.

    pip install 'aekit[series]'          # aeon (with pyod and stumpy) for the peers and the data; aekit needs none
    python benchmarks/series.py [--only a|b|c|check] [--quick]

Three settings, nothing downloaded (the data is in aeon's wheel):

(a) KDD-TSAD 135 (UCR anomaly archive, "InternalBleeding16": a patient's heart rate): the normal training part
    (1,200 steps) to fit on, the labelled test part (7,501 steps, one anomaly) to score.
(b) Daphnet S06R02E0 (9 gait sensors, no freezing events in the file): the first 40% to fit on; in the rest, four
    anomalies are injected (seed 0): spikes in one channel, a level shift in another, a frozen channel, two
    channels swapped, each over 200 steps; labels are those steps.
(c) Whole series, one class normal and the others anomalous, on UCR sets aeon ships (GunPoint, ArrowHead,
    ItalyPowerDemand): fit on the normal class's training series, score the test series; every class takes its
    turn as the normal one and the ROC-AUC is averaged. ``--only check`` runs (c) on the sets kept for an independent
    check (OSULeaf, BasicMotions with 6 channels, UnitTest), which no default was chosen on.

Metrics: VUS-PR (``range_pr_vus_score``, Paparrizos et al. 2022, the TSB-AD benchmark's headline) and range PR-AUC
for (a) and (b), ROC-AUC for (c). Every detector at the same window (100 steps, the issue's protocol; aekit's
defaults pick their own from the series' period, and the table prints aekit at 100 too): aeon's DWT-MLEAD,
KMeansAD, STOMP (the matrix profile), LOF, IsolationForest and COPOD, PCA reconstruction error of the windows (each
step the mean error of the windows covering it; and once more scored exactly as aekit scores a step, so that only
the model differs), and for (c) ROCKAD, PCA and scikit-learn's IsolationForest on whole series. Semi-supervised detectors are fitted on the normal part; the unsupervised ones
(DWT-MLEAD, STOMP) see the test part alone, and on a multivariate series score each channel, the scores averaged.
Seconds are fit + score on this machine.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

try:
    from aeon.anomaly_detection.collection import ROCKAD
    from aeon.anomaly_detection.series.distance_based import LOF, STOMP, KMeansAD
    from aeon.anomaly_detection.series.distribution_based import COPOD, DWT_MLEAD
    from aeon.anomaly_detection.series.outlier_detection import IsolationForest
    from aeon.benchmarking.metrics.anomaly_detection import range_pr_auc_score, range_pr_vus_score
    from aeon.datasets import load_daphnet_s06r02e0, load_kdd_tsad_135
except ImportError:
    raise SystemExit("benchmarks/series.py needs the 'series' extra: pip install 'aekit[series]' (aeon, pyod, stumpy)")
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

import aekit
from aekit.core.series import channel_moments, cut, most_abnormal, overlap_mean, starts

WINDOW = 100
SEED = 0


# ------------------------------------------------------------------------------------------ data
def kdd_tsad() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    train, _ = load_kdd_tsad_135(split="train")
    test, labels = load_kdd_tsad_135(split="test")
    return train[:, None].astype(np.float64), test[:, None].astype(np.float64), labels.astype(int)


def daphnet() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daphnet S06R02E0 with four injected anomalies in its test part (each 200 steps)."""
    x, _ = load_daphnet_s06r02e0()
    x = np.asarray(x, dtype=np.float64)
    split = int(0.4 * len(x))
    train, test = x[:split], x[split:].copy()
    labels = np.zeros(len(test), int)
    rng = np.random.default_rng(SEED)
    spans = [(400, 600), (1400, 1600), (2400, 2600), (3400, 3600)]
    std = train.std(0)
    (a, b) = spans[0]
    hits = rng.choice(np.arange(a, b), 12, replace=False)  # spikes in channel 0
    test[hits, 0] += 6 * std[0] * rng.choice([-1, 1], len(hits))
    (a, b) = spans[1]
    test[a:b, 3] += 3 * std[3]  # a level shift in channel 3
    (a, b) = spans[2]
    test[a:b, 5] = test[a, 5]  # channel 5 frozen
    (a, b) = spans[3]
    test[a:b, [1, 7]] = test[a:b, [7, 1]]  # channels 1 and 7 swapped
    for a, b in spans:
        labels[a:b] = 1
    return train, test, labels


COLLECTIONS = {"GunPoint": "load_gunpoint", "ArrowHead": "load_arrow_head",
               "ItalyPowerDemand": "load_italy_power_demand"}  # aeon.datasets' loaders
CHECK = {"OSULeaf": "load_osuleaf", "BasicMotions": "load_basic_motions", "UnitTest": "load_unit_test"}


def collections(sets: dict[str, str] = COLLECTIONS) -> dict[str, tuple]:
    import aeon.datasets

    out = {}
    for name, loader in sets.items():
        loader = getattr(aeon.datasets, loader)
        x_train, y_train = loader(split="train")
        x_test, y_test = loader(split="test")
        out[name] = (x_train.astype(np.float64), y_train, x_test.astype(np.float64), y_test)
    return out


# ------------------------------------------------------------------------------------------ detectors on a series
def pca_windows(train: np.ndarray, test: np.ndarray, window: int, as_aekit: bool = False) -> np.ndarray:
    """PCA's reconstruction error of the windows (10 components, channels standardized on the training part), each
    step given the mean error of the windows covering it; ``as_aekit``: scored as aekit scores a step (each channel's
    error standardized on the training part, the largest taken), so that the model is all that differs."""
    mean, std = train.mean(0), train.std(0) + 1e-12
    a, b = (train - mean) / std, (test - mean) / std
    pca = PCA(n_components=min(10, window * a.shape[1] - 1), random_state=SEED)
    pca.fit(cut(a, window).reshape(-1, window * a.shape[1]))

    def channel_errors(x):  # (T, C): each channel's window errors, averaged over the windows covering a step
        at = starts(len(x), window)
        flat = cut(x, window, at=at).reshape(len(at), -1)
        squared = (pca.inverse_transform(pca.transform(flat)) - flat) ** 2
        return overlap_mean(torch.from_numpy(squared.reshape(len(at), x.shape[1], window).mean(2)), window).numpy()

    errors = channel_errors(b)
    return most_abnormal(errors, channel_moments(channel_errors(a)) if as_aekit else None)


def aeon_detectors(window: int) -> dict:
    return {
        "DWT-MLEAD": lambda: DWT_MLEAD(),
        "KMeansAD": lambda: KMeansAD(window_size=window, random_state=SEED),
        "STOMP (matrix profile)": lambda: STOMP(window_size=window),
        "LOF": lambda: LOF(window_size=window),
        "IsolationForest": lambda: IsolationForest(window_size=window, random_state=SEED),
        "COPOD": lambda: COPOD(window_size=window),
    }


def score_series(make, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """A peer's per-step scores of ``test`` ``(T, C)``: semi-supervised ones fitted on ``train`` (aeon takes a
    multivariate series as (channels, steps)); a univariate-only peer scores each channel and the scores are averaged."""
    detector = make()
    if test.shape[1] > 1 and not detector.get_tag("capability:multivariate"):
        return np.mean([score_series(make, train[:, [j]], test[:, [j]]) for j in range(test.shape[1])], axis=0)
    shaped = (lambda x: x[:, 0]) if test.shape[1] == 1 else (lambda x: x.T)  # noqa: E731
    if detector.get_tag("fit_is_empty"):  # unsupervised: the test part alone
        return np.asarray(detector.fit_predict(shaped(test)), dtype=np.float64)
    detector.fit(shaped(train))
    return np.asarray(detector.predict(shaped(test)), dtype=np.float64)


def series_table(title: str, train: np.ndarray, test: np.ndarray, labels: np.ndarray, quick: bool) -> dict:
    print(f"\n{title}: fit on {len(train)} steps x {train.shape[1]} channel(s), score {len(test)} steps "
          f"({labels.sum()} anomalous)")  # fmt: skip
    rows = {}

    def measure(name, compute):
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = compute()
        except Exception as err:  # a peer that cannot take this series: said, not hidden
            print(f"  {name:<38} failed: {type(err).__name__}: {str(err)[:80]}")
            return
        seconds = time.perf_counter() - began
        scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        rows[name] = (range_pr_vus_score(labels, scores), range_pr_auc_score(labels, scores), seconds)
        vus, auc, _ = rows[name]
        print(f"  {name:<38}{vus:>9.3f}{auc:>14.3f}{seconds:>9.1f}", flush=True)

    print(f"  {'detector':<38}{'VUS-PR':>9}{'range PR-AUC':>14}{'seconds':>9}")
    defaults = aekit.SeriesOutlierDetector(random_state=SEED)
    measure("aekit SeriesOutlierDetector()", lambda: -defaults.fit(train).score_samples(test))
    print(f"  {'':<38}(its window: {defaults.window_})")
    measure(f"aekit, window {WINDOW}",
            lambda: -aekit.SeriesOutlierDetector(window=WINDOW, random_state=SEED).fit(train).score_samples(test))
    measure(f"PCA on windows of {WINDOW}", lambda: pca_windows(train, test, WINDOW))
    measure(f"PCA on windows of {WINDOW}, aekit's score", lambda: pca_windows(train, test, WINDOW, as_aekit=True))
    for name, make in aeon_detectors(WINDOW).items():
        if quick and name in ("STOMP (matrix profile)", "LOF"):
            continue
        measure(name, lambda make=make: score_series(make, train, test))
    return rows


# ------------------------------------------------------------------------------------------ whole series
def collection_table(quick: bool, sets: dict[str, str] = COLLECTIONS, title: str = "(c) whole series") -> dict:
    print(f"\n{title}: one class normal (fit on its training series), the test series scored; ROC-AUC, the mean over "
          "classes as the normal one")  # fmt: skip
    names = ["aekit AutoEncoderOutlierDetector()", "ROCKAD", "PCA (whole series)", "IsolationForest (sklearn)"]
    print(f"  {'set':<18}" + "".join(f"{n[:26]:>28}" for n in names))
    results = {n: [] for n in names}
    for set_name, (x_train, y_train, x_test, y_test) in collections(sets).items():
        means, seconds = {n: [] for n in names}, {n: 0.0 for n in names}
        for normal in np.unique(y_train):
            fit_on = x_train[y_train == normal]  # (n, C, L)
            truth = (y_test != normal).astype(int)
            shape = x_train.shape[1:]
            flat_fit, flat_test = fit_on.reshape(len(fit_on), -1), x_test.reshape(len(x_test), -1)
            makers = {
                names[0]: lambda: -aekit.AutoEncoderOutlierDetector(input_shape=shape, random_state=SEED)
                .fit(flat_fit).score_samples(flat_test),
                names[1]: lambda: ROCKAD(random_state=SEED).fit(fit_on).predict(x_test),
                names[2]: lambda: pca_whole(flat_fit, flat_test),
                names[3]: lambda: -__import__("sklearn.ensemble", fromlist=["IsolationForest"]).IsolationForest(
                    random_state=SEED).fit(flat_fit).score_samples(flat_test),
            }  # fmt: skip
            for name, make in makers.items():
                began = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    means[name].append(roc_auc_score(truth, make()))
                seconds[name] += time.perf_counter() - began
        print(f"  {set_name:<18}" + "".join(f"{np.mean(means[n]):>20.3f} ({seconds[n]:>4.0f} s)" for n in names),
              flush=True)  # fmt: skip
        for n in names:
            results[n].append(np.mean(means[n]))
    print(f"  {'mean':<18}" + "".join(f"{np.mean(results[n]):>20.3f}{'':>8}" for n in names))
    return {n: np.mean(v) for n, v in results.items()}


def pca_whole(fit_on: np.ndarray, test: np.ndarray) -> np.ndarray:
    mean, std = fit_on.mean(0), fit_on.std(0) + 1e-12
    a, b = (fit_on - mean) / std, (test - mean) / std
    pca = PCA(n_components=min(2, len(a) - 1), random_state=SEED).fit(a)  # as many as aekit's code
    return ((pca.inverse_transform(pca.transform(b)) - b) ** 2).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("a", "b", "c", "check"), help="one setting (check: (c) on the sets kept for "
                        "an independent check)")
    parser.add_argument("--quick", action="store_true", help="leave out the slow peers (STOMP, LOF)")
    args = parser.parse_args()
    print(f"aekit {aekit.__version__}; {os.cpu_count()} cores; window {WINDOW}; seed {SEED}")
    tables = {}
    if args.only in (None, "a"):
        tables["a"] = series_table("(a) KDD-TSAD 135", *kdd_tsad(), args.quick)
    if args.only in (None, "b"):
        tables["b"] = series_table("(b) Daphnet S06R02E0, anomalies injected", *daphnet(), args.quick)
    if "a" in tables and "b" in tables:
        names = [n for n in tables["a"] if n in tables["b"]]
        mean = {n: (tables["a"][n][0] + tables["b"][n][0]) / 2 for n in names}
        print("\nmean VUS-PR over (a) and (b): " + "; ".join(f"{n} {v:.3f}" for n, v in
                                                         sorted(mean.items(), key=lambda item: -item[1])))  # fmt: skip
    if args.only in (None, "c"):
        collection_table(args.quick)
    if args.only == "check":
        collection_table(args.quick, CHECK, "(c) on the sets kept for an independent check")


if __name__ == "__main__":
    main()
