"""The anomaly detector's defaults on scikit-learn's bundled tables, beside IsolationForest and PCA.

    python benchmarks/tables_detector.py [--variants]

One class normal, the others anomalous: breast cancer (benign normal, malignant the anomalies), wine (class 0
normal), digits (0 normal; the 8x8 pixels as a table of 64 columns). Half of the normal rows (seed 0) fit each
detector; the other half and every anomalous row are scored; ROC-AUC, anomalous as positive. Repeated for seeds 0,
1, 2 (the split and the detectors' seeds) and averaged. ``--variants`` adds the settings tried when the defaults were
chosen.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from aekit.faces.estimator import AutoEncoderOutlierDetector

SEEDS = (0, 1, 2)


def tables() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (rows, 1 for anomalous)."""
    cancer = load_breast_cancer()
    wine = load_wine()
    digits = load_digits()
    return {"breast cancer (benign)": (cancer.data, (cancer.target == 0).astype(int)),  # 0 is malignant
            "wine (class 0)": (wine.data, (wine.target != 0).astype(int)),
            "digits (0)": (digits.data, (digits.target != 0).astype(int))}  # fmt: skip


def pca_error(fit: np.ndarray, score: np.ndarray, seed: int) -> np.ndarray:
    scaler = StandardScaler().fit(fit)
    a, b = scaler.transform(fit), scaler.transform(score)
    pca = PCA(n_components=max(1, min(a.shape[1] // 4, len(a) - 1)), random_state=seed).fit(a)
    return ((pca.inverse_transform(pca.transform(b)) - b) ** 2).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", action="store_true", help="also the settings tried for the defaults")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    methods = {
        "aekit AutoEncoderOutlierDetector()": lambda fit, score, seed: -AutoEncoderOutlierDetector(random_state=seed)
        .fit(fit).score_samples(score),
        "IsolationForest()": lambda fit, score, seed: -IsolationForest(random_state=seed).fit(fit).score_samples(score),
        "PCA error (a quarter of the columns)": pca_error,
    }  # fmt: skip
    if args.variants:
        for name, options in {"2-D code, 50 epochs (the former defaults)": dict(n_components=2, max_epochs=50,
                                                                                  n_iter_no_change=10),
                              "latent distance": dict(latent_distance=True),
                              "8-D code": dict(n_components=8)}.items():  # fmt: skip
            methods[f"aekit, {name}"] = lambda fit, score, seed, o=options: -AutoEncoderOutlierDetector(
                random_state=seed, **o).fit(fit).score_samples(score)  # fmt: skip
    print(f"ROC-AUC, mean over seeds {SEEDS}; half the normal rows fit, the rest and every anomaly scored")
    print(f"{'method':<44}" + "".join(f"{name:>24}" for name in tables()) + f"{'mean':>8}{'seconds':>9}")
    for method, detect in methods.items():
        results, began = [], time.perf_counter()
        for x, anomalous in tables().values():
            aucs = []
            for seed in SEEDS:
                normal = np.flatnonzero(anomalous == 0)
                fit = np.random.default_rng(seed).permutation(normal)[: len(normal) // 2]
                held = np.setdiff1d(np.arange(len(x)), fit)
                aucs.append(roc_auc_score(anomalous[held], detect(x[fit], x[held], seed)))
            results.append(np.mean(aucs))
        print(f"{method:<44}" + "".join(f"{r:>24.3f}" for r in results) + f"{np.mean(results):>8.3f}"
              f"{time.perf_counter() - began:>9.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
