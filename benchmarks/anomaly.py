"""MNIST with one digit held out as the anomaly class: ROC-AUC of aekit's detector beside two baselines.

Trains on the training images of the nine other digits; scores every test image; the held-out digit is the
positive class. Baselines: scikit-learn's IsolationForest and PCA's reconstruction error at the same code size.
Run: ``python benchmarks/anomaly.py [--digits 0,1,...] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from aekit.data.datasets import load_mnist_arrays
from aekit.faces.estimator import AutoEncoderOutlierDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", default="0,1,7,9", help="held-out digits, one experiment each")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--code", type=int, default=32, help="code size of the AE and components of PCA")
    args = parser.parse_args()

    x_train, y_train = load_mnist_arrays(train=True)
    x_test, y_test = load_mnist_arrays(train=False)
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255
    print(f"{'held out':>9}{'aekit AE':>10}{'PCA-' + str(args.code):>9}{'IsoForest':>11}{'AE seconds':>12}")
    rows = []
    for digit in [int(d) for d in args.digits.split(",")]:
        normal = x_train[y_train != digit]
        is_anomaly = (y_test == digit).astype(int)
        began = time.perf_counter()
        detector = AutoEncoderOutlierDetector(n_components=args.code, hidden=(256,), max_epochs=args.epochs,
                                              scale=False, random_state=0).fit(normal)  # fmt: skip
        seconds = time.perf_counter() - began
        ae = roc_auc_score(is_anomaly, detector.decision_function(x_test))
        pca = PCA(args.code, svd_solver="covariance_eigh").fit(normal)
        pca_error = ((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2).sum(1)
        forest = IsolationForest(random_state=0).fit(normal)
        rows.append((ae, roc_auc_score(is_anomaly, pca_error), roc_auc_score(is_anomaly, -forest.score_samples(x_test))))
        print(f"{digit:>9}{rows[-1][0]:>10.3f}{rows[-1][1]:>9.3f}{rows[-1][2]:>11.3f}{seconds:>12.1f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':>9}{mean[0]:>10.3f}{mean[1]:>9.3f}{mean[2]:>11.3f}")


if __name__ == "__main__":
    main()
