"""The imputer: scikit-learn's contract with NaN allowed, observed cells kept exactly, holes filled well."""

import os

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.utils.estimator_checks import parametrize_with_checks

from aekit.imputer import AutoEncoderImputer

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda


@parametrize_with_checks([AutoEncoderImputer(max_epochs=3, hidden=(16,), random_state=0, device=DEVICE)])
@pytest.mark.filterwarnings("ignore:n_components=.*:UserWarning")  # the checks' tables have few features
def test_scikit_learn_contract(estimator, check):
    check(estimator)


def low_rank_with_holes(share=0.2, n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 12)) + 0.05 * rng.normal(size=(n, 12))
    holes = rng.random(x.shape) < share
    with_holes = x.copy()
    with_holes[holes] = np.nan
    return x, with_holes, holes


def rmse(a, b, where):
    return float(np.sqrt(((a - b)[where] ** 2).mean()))


def test_fills_the_holes_and_keeps_every_observed_cell():
    x, with_holes, holes = low_rank_with_holes()
    imputer = AutoEncoderImputer(max_epochs=60, random_state=0, device=DEVICE).fit(with_holes)
    filled = imputer.transform(with_holes)
    assert np.isfinite(filled).all()
    assert np.array_equal(filled[~holes], with_holes[~holes])  # bit-identical
    mean_rmse = rmse(SimpleImputer().fit_transform(with_holes), x, holes)
    assert rmse(filled, x, holes) < 0.35 * mean_rmse  # rank-3 rows: the other cells say what a hole held
    assert imputer.params_["n_components"] == 6  # "auto": half the features
    assert np.array_equal(AutoEncoderImputer(max_epochs=60, random_state=0, device=DEVICE).fit_transform(with_holes),
                          filled)  # fmt: skip


def test_a_column_never_observed_and_rows_without_holes():
    x, with_holes, _ = low_rank_with_holes(n=200)
    with_holes[:, 4] = np.nan
    imputer = AutoEncoderImputer(max_epochs=5, random_state=0, device=DEVICE).fit(with_holes)
    assert imputer.mean_[4] == 0 and imputer.scale_[4] == 1
    assert np.isfinite(imputer.transform(with_holes)).all()
    assert np.array_equal(imputer.transform(x), x)  # nothing missing: returned as it came


def test_bad_parameters_are_refused():
    _, with_holes, _ = low_rank_with_holes(n=50)
    with pytest.raises(ValueError, match="n_refinements=0 must be a positive integer"):
        AutoEncoderImputer(n_refinements=0).fit(with_holes)
    with pytest.raises(ValueError, match="early_stopping=True is not supported by the imputer"):
        AutoEncoderImputer(early_stopping=True).fit(with_holes)
