import os
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit
from aekit.faces.estimator import AutoEncoderOutlierDetector, AutoEncoderTransformer

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

@parametrize_with_checks(
    [AutoEncoderTransformer(max_epochs=2, random_state=0, device=DEVICE),
     AutoEncoderOutlierDetector(max_epochs=2, random_state=0, device=DEVICE),
     AutoEncoderOutlierDetector(max_epochs=2, random_state=0, device=DEVICE, latent_distance=True)],
)  # fmt: skip  (no expected failures: the detector follows scikit-learn's sign conventions)
@pytest.mark.filterwarnings("ignore:n_components=2. the code:UserWarning")  # the checks' data has 2 features
def test_scikit_learn_contract(estimator, check):
    check(estimator)


@pytest.fixture
def noisy_low_rank():
    rng = np.random.default_rng(0)
    return rng.normal(size=(1000, 3)) @ rng.normal(size=(3, 20)) + 0.3 * rng.normal(size=(1000, 20))


def sse(X, X_hat):
    return float(((X - X_hat) ** 2).sum(1).mean())


def test_linear_autoencoder_matches_pca_within_one_percent(noisy_low_rank):
    X = noisy_low_rank
    pca = PCA(3).fit(X)
    ae = AutoEncoderTransformer(3, hidden=(), max_epochs=300, lr=3e-3, batch_size=64, scale=False,
                                n_iter_no_change=None, random_state=0)  # all 300 epochs
    ae.fit(X)
    ratio = sse(X, ae.inverse_transform(ae.transform(X))) / sse(X, pca.inverse_transform(pca.transform(X)))
    assert 1 - 1e-6 <= ratio < 1.01  # PCA is optimal among rank-3 linear maps; the AE gets within 1%


def test_fit_transform_equals_fit_then_transform(noisy_low_rank):
    a = AutoEncoderTransformer(2, max_epochs=3, random_state=1).fit_transform(noisy_low_rank)
    b = AutoEncoderTransformer(2, max_epochs=3, random_state=1).fit(noisy_low_rank).transform(noisy_low_rank)
    np.testing.assert_array_equal(a, b)


def test_inverse_transform_round_trip_on_representable_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2)) @ rng.normal(size=(2, 8)) * 5 + 100  # rank 2, far from standardized units
    ae = AutoEncoderTransformer(2, hidden=(), max_epochs=200, lr=1e-2, batch_size=64, random_state=0).fit(X)
    X_hat = ae.inverse_transform(ae.transform(X))
    assert np.abs(X_hat - X).max() < 0.05 * X.std()


def test_pipeline_beats_random_features_and_works_in_grid_search():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = X[:1400], X[1400:], y[:1400], y[1400:]
    ae = make_pipeline(AutoEncoderTransformer(16, hidden=(64,), max_epochs=30, random_state=0),
                       LogisticRegression(max_iter=1000))  # fmt: skip
    noise = make_pipeline(FunctionTransformer(lambda X: np.random.default_rng(0).normal(size=(len(X), 16))),
                          LogisticRegression(max_iter=1000))  # fmt: skip
    ae_score = ae.fit(X_train, y_train).score(X_test, y_test)
    assert ae_score > 0.8 > noise.fit(X_train, y_train).score(X_test, y_test) + 0.5
    search = GridSearchCV(make_pipeline(AutoEncoderTransformer(max_epochs=3, random_state=0),
                                        LogisticRegression(max_iter=200)),
                          {"autoencodertransformer__n_components": [2, 8]}, cv=2).fit(X_train[:400], y_train[:400])  # fmt: skip
    assert search.best_params_["autoencodertransformer__n_components"] == 8


def test_pickle_and_clone(noisy_low_rank):
    ae = AutoEncoderTransformer(3, max_epochs=2, random_state=0).fit(noisy_low_rank)
    again = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(again.transform(noisy_low_rank), ae.transform(noisy_low_rank))
    fresh = clone(ae)
    assert fresh.get_params() == ae.get_params() and not hasattr(fresh, "model_")


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    ae = AutoEncoderTransformer(2, max_epochs=1, random_state=0).fit(frame)
    assert list(ae.feature_names_in_) == ["a", "b", "c"]
    assert list(ae.get_feature_names_out()) == ["autoencodertransformer0", "autoencodertransformer1"]


@pytest.mark.parametrize(
    "params, message",
    [({"n_components": 0}, "n_components=0 must be a positive integer"), ({"lr": -1}, "lr=-1 must be a positive"),
     ({"model": "rnn"}, "unknown model 'rnn'; choose one of"), ({"loss": "bce"}, "loss 'bce' needs data in \\[0, 1\\]; this data is standardized"),
     ({"beta": 2.0}, "option 'beta' does not apply to a mlp body with the plain objective: it belongs to the vae objective"),
     ({"model": "conv", "hidden": (8,)}, "option 'hidden' does not apply to a conv body .*: it belongs to the mlp body"),
     ({"model": "conv"}, "a convolutional body needs image data \\(C, H, W\\); this data has shape \\(20,\\)"),
     ({"input_shape": (1, 3, 3)}, "input_shape=\\(1, 3, 3\\) holds 9 values per row but X has 20 features"),
     ({"objective": "vq", "groups": 3}, "groups=3 must be a positive divisor of the code size latent_dim=2")],
)  # fmt: skip
def test_bad_parameters_name_the_value(params, message, noisy_low_rank):
    with pytest.raises(ValueError, match=message):
        AutoEncoderTransformer(**params).fit(noisy_low_rank)


def test_outlier_detector_flags_points_off_the_data():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 10))
    inliers = rng.normal(size=(500, 2)) @ basis
    outliers = rng.normal(size=(20, 10)) * 3
    detector = AutoEncoderOutlierDetector(contamination=0.05, n_components=2, hidden=(), max_epochs=100, lr=1e-2,
                                          random_state=0).fit(inliers)  # fmt: skip
    assert np.mean(detector.predict(inliers) == 1) >= 0.94
    assert np.mean(detector.predict(outliers) == -1) >= 0.9
    # scikit-learn's signs: an obvious outlier has a negative decision_function and a lower score_samples
    assert detector.decision_function(outliers).max() < 0 <= np.median(detector.decision_function(inliers))
    assert detector.score_samples(outliers).max() < detector.score_samples(inliers).min() + 1e-12 or \
        np.mean(detector.score_samples(outliers) < np.median(detector.score_samples(inliers))) == 1
    np.testing.assert_allclose(detector.decision_function(outliers), detector.score_samples(outliers) - detector.offset_)
    # PyOD's names: training errors, higher is more abnormal; labels_ in {0, 1}
    assert detector.threshold_ == -detector.offset_ >= np.median(detector.decision_scores_)
    np.testing.assert_allclose(detector.decision_scores_, -detector.score_samples(inliers))
    assert set(np.unique(detector.labels_)) == {0, 1}
    assert np.array_equal(detector.labels_, (detector.predict(inliers) == -1).astype(int))


def test_latent_distance_flags_rows_the_decoder_rebuilds_but_no_training_code_resembles():
    """Rows on the training plane but far out along it reconstruct perfectly (a linear autoencoder rebuilds the
    whole plane), so the reconstruction error cannot tell them from inliers; their codes' distance can."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 10))
    inliers = rng.normal(size=(500, 2)) @ basis + 0.05 * rng.normal(size=(500, 10))
    angle = rng.uniform(0, 2 * np.pi, 50)  # on a circle of radius 6 in the plane's coordinates (inliers: N(0, I))
    far = 6 * np.stack([np.cos(angle), np.sin(angle)], 1) @ basis + 0.05 * rng.normal(size=(50, 10))
    test = np.vstack([inliers[:200], far])
    truth = np.r_[np.zeros(200), np.ones(50)]
    auc = {}
    for latent in (False, True):
        detector = AutoEncoderOutlierDetector(contamination=0.05, n_components=2, body="linear", max_epochs=60,
                                              lr=1e-2, scale=False, random_state=0, device=DEVICE,
                                              latent_distance=latent).fit(inliers)  # fmt: skip
        auc[latent] = roc_auc_score(truth, -detector.score_samples(test))
    assert auc[False] < 0.8 and auc[True] > 0.99, auc
    # the same conventions as without it: training scores are decision_scores_, offset_ their quantile
    np.testing.assert_allclose(detector.decision_scores_, -detector.score_samples(inliers))
    assert detector.threshold_ == -detector.offset_ == pytest.approx(np.quantile(detector.decision_scores_, 0.95))
    assert abs(detector.decision_scores_.mean()) < 1e-6  # two standardized terms: mean zero on the training rows


def test_early_stopping_stops_before_max_epochs_on_data_it_cannot_improve_on():
    noise = np.random.default_rng(0).normal(size=(400, 8))  # no structure to learn: the validation error plateaus
    ae = AutoEncoderTransformer(2, max_epochs=200, early_stopping=True, n_iter_no_change=5, random_state=0,
                                device=DEVICE).fit(noise)  # fmt: skip
    assert ae.n_iter_ < 200 and len(ae.history_) == ae.n_iter_
    assert set(ae.history_[0]) == {"epoch", "train_loss", "validation_mse", "seconds"}
    best = min(row["validation_mse"] for row in ae.history_)
    assert all(row["validation_mse"] > best - 1e-4 for row in ae.history_[-5:])  # the last 5 did not improve
    plain = AutoEncoderTransformer(2, max_epochs=3, n_iter_no_change=None, random_state=0, device=DEVICE).fit(noise)
    assert plain.n_iter_ == 3 and set(plain.history_[0]) == {"epoch", "train_loss", "seconds"}  # no fake test column


def test_every_part_option_is_an_estimator_parameter():
    from dataclasses import fields

    import aekit

    options = {f.name for part in (*aekit.BODIES.values(), *aekit.OBJECTIVES.values()) for f in fields(part)}
    for cls in (AutoEncoderTransformer, AutoEncoderOutlierDetector):
        assert options | {"model", "body", "objective", "input_shape"} <= set(cls().get_params())


@pytest.mark.parametrize(
    "params, body, objective",
    [({"model": "vae", "beta": 0.5, "activation": "tanh"}, aekit.MLPBody(hidden=(64,), activation="tanh"),
      aekit.Variational(0.5)),
     ({"model": "denoising", "body": "conv", "input_shape": (1, 4, 4), "channels": (4,), "noise": "masking",
       "noise_level": 0.2}, aekit.ConvBody((4,)), aekit.Denoising("masking", 0.2)),
     ({"objective": "sparse", "body": "linear", "sparsity": 0.1, "input_shape": (16,)}, aekit.LinearBody(),
      aekit.Sparse(0.1)),
     ({"model": "vq", "codebook_size": 8, "groups": 2, "commitment": 0.5, "hidden": 16}, aekit.MLPBody(hidden=(16,)),
      aekit.VectorQuantized(8, 2, 0.5))],
)  # fmt: skip
def test_every_body_and_objective_option_reaches_the_model(params, body, objective):
    X = np.random.default_rng(0).random((64, 16))
    ae = AutoEncoderTransformer(2, max_epochs=1, random_state=0, **params).fit(X)
    assert ae.model_.config.body == body and ae.model_.config.objective == objective
    assert ae.transform(X).shape == (64, 2)


def test_conv_body_on_image_rows_with_input_shape():
    rng = np.random.default_rng(0)
    X = rng.random((120, 36)) * (rng.random((1, 36)) > 0.5)  # 6x6 "images" sharing a stroke pattern
    ae = AutoEncoderTransformer(4, model="conv", input_shape=(1, 6, 6), channels=(4, 8), max_epochs=20,
                                random_state=0).fit(X)  # fmt: skip
    assert ae.model_.config.input_shape == (1, 6, 6)
    assert ae.transform(X).shape == (120, 4) and ae.inverse_transform(ae.transform(X)).shape == X.shape
    assert ae.score(X) > AutoEncoderTransformer(4, model="conv", input_shape=(1, 6, 6), channels=(4, 8),
                                                max_epochs=1, random_state=0).fit(X).score(X)  # it learned


@pytest.mark.parametrize("optimizer, lr", [("adam", 3e-3), ("adamw", 3e-3), ("sgd", 0.01)])
def test_each_registered_optimizer_is_an_estimator_parameter_that_learns(noisy_low_rank, optimizer, lr):
    X = noisy_low_rank
    pca_sse = sse(X, (pca := PCA(3).fit(X)).inverse_transform(pca.transform(X)))
    ae = AutoEncoderTransformer(3, hidden=(), optimizer=optimizer, lr=lr, max_epochs=100, batch_size=64, scale=False,
                                weight_decay=1e-5, n_iter_no_change=None, random_state=0).fit(X)  # fmt: skip
    assert sse(X, ae.inverse_transform(ae.transform(X))) < 1.05 * pca_sse  # near PCA's optimum, whatever steps
    again = AutoEncoderTransformer(3, hidden=(), optimizer=optimizer, lr=lr, max_epochs=100, batch_size=64,
                                   scale=False, weight_decay=1e-5, n_iter_no_change=None, random_state=0).fit(X)
    np.testing.assert_array_equal(ae.transform(X), again.transform(X))
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose one of"):
        AutoEncoderOutlierDetector(optimizer="rmsprop", max_epochs=1).fit(X)


def test_the_detector_chooses_the_image_recipe_for_images_and_the_table_defaults_for_tables():
    rng = np.random.default_rng(0)
    images = rng.random((64, 64)).astype(np.float32)  # 64 pixels as 1x8x8 images
    detector = AutoEncoderOutlierDetector(input_shape=(1, 8, 8), max_epochs=1, random_state=0).fit(images)
    assert detector.params_ == {**AutoEncoderOutlierDetector.IMAGE_RECIPE, "max_epochs": 1}  # given beats chosen
    assert detector.model_.config.body.kind == "conv" and detector.model_.config.latent_dim == 16
    assert hasattr(detector, "code_precision_") and not hasattr(detector, "mean_")  # latent distance, unscaled
    table = AutoEncoderOutlierDetector(max_epochs=1, random_state=0).fit(rng.normal(size=(64, 6)))
    assert table.params_ == {**AutoEncoderOutlierDetector.TABLE_DEFAULTS, "max_epochs": 1}
    assert table.get_params()["n_components"] is None and table.get_params()["latent_distance"] == "auto"
    assert clone(table).get_params() == table.get_params()


@pytest.mark.parametrize("latent_distance", [False, True])
def test_per_feature_errors_sum_to_the_reconstruction_part_of_the_score(latent_distance):
    X = np.random.default_rng(0).normal(size=(120, 5))
    detector = AutoEncoderOutlierDetector(n_components=2, max_epochs=3, random_state=0,
                                          latent_distance=latent_distance).fit(X)  # fmt: skip
    parts = detector.explain(X[:10])
    assert parts["feature_errors"].shape == (10, 5)
    np.testing.assert_allclose(parts["feature_errors"].sum(1), parts["reconstruction_error"], rtol=1e-12)
    np.testing.assert_allclose(parts["score"], -detector.score_samples(X[:10]))
    if latent_distance:
        mean_e, std_e, mean_d, std_d = detector.score_stats_
        np.testing.assert_allclose(parts["score"], (parts["reconstruction_error"] - mean_e) / std_e
                                   + (parts["latent_distance"] - mean_d) / std_d)  # fmt: skip
    else:
        assert parts["latent_distance"] is None
        np.testing.assert_allclose(parts["score"], parts["reconstruction_error"])


def one_digit_of_sklearn_digits(normal=0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    return x[y == normal][:150], x[150:], (y[150:] != normal).astype(int)


def test_blurred_errors_and_nearest_codes_score_and_explain_consistently():
    from sklearn.metrics import roc_auc_score

    train, test, anomalous = one_digit_of_sklearn_digits()
    options = dict(input_shape=(1, 8, 8), max_epochs=20, random_state=0, device=DEVICE)
    plain = AutoEncoderOutlierDetector(**options).fit(train)
    best = AutoEncoderOutlierDetector(**options, error_blur=3, code_neighbors=5).fit(train)
    for detector in (plain, best):
        assert roc_auc_score(anomalous, -detector.score_samples(test)) > 0.9
    parts = best.explain(test[:20])
    np.testing.assert_allclose(parts["feature_errors"].sum(1), parts["reconstruction_error"], rtol=1e-12)
    mean_e, std_e = best.score_stats_[:2]
    mean_d, std_d = best.neighbor_stats_
    np.testing.assert_allclose(parts["score"], (parts["reconstruction_error"] - mean_e) / std_e
                               + (parts["latent_distance"] - mean_d) / std_d)  # fmt: skip
    assert abs(best.labels_.mean() - best.contamination) < 0.02  # the training rows' own scores set the threshold
    assert not np.allclose(parts["reconstruction_error"], plain.explain(test[:20])["reconstruction_error"])
    assert (best.latent_score().blur, best.latent_score().neighbors) == (3, 5)  # what save() stores


@pytest.mark.parametrize("params, message", [
    (dict(error_blur=2), "error_blur=2 must be an odd positive integer"),
    (dict(error_blur=3, input_shape=None), "error_blur=3 needs image rows"),
    (dict(code_neighbors=-1), "code_neighbors=-1 must be a non-negative integer"),
    (dict(code_neighbors=3, latent_distance=False), "code_neighbors=3 is a kind of latent distance"),
])  # fmt: skip
def test_bad_scoring_options_name_the_value(params, message):
    train, _, _ = one_digit_of_sklearn_digits()
    with pytest.raises(ValueError, match=message):
        AutoEncoderOutlierDetector(**{"input_shape": (1, 8, 8), "max_epochs": 1, **params}).fit(train)


@pytest.mark.parametrize("options", [dict(latent_distance=False), dict(), dict(error_blur=3, code_neighbors=5),
                                     dict(latent_distance=False, error_blur=3)])  # fmt: skip
def test_a_saved_detector_is_a_run_that_scores_as_the_detector_does(options, tmp_path, capsys):
    """save(dir) writes a run directory: aekit score, /v1/score and the exported score graph give the detector's own
    scores, whichever scoring options it has; the report's anomaly figure ranks by that score too."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    import onnxruntime
    from fastapi.testclient import TestClient

    from aekit.faces.cli import main
    from aekit.faces.serve import create_app

    train, test, _ = one_digit_of_sklearn_digits()
    detector = AutoEncoderOutlierDetector(input_shape=(1, 8, 8), max_epochs=3, random_state=0, device=DEVICE,
                                          **options).fit(train)  # fmt: skip
    path = detector.save(tmp_path / "detector")
    expected = -detector.score_samples(test[:200])
    np.save(tmp_path / "test.npy", test[:200])
    assert main(["score", str(path), "--input", str(tmp_path / "test.npy"), "--out", str(tmp_path / "s.npy")]) == 0
    http = TestClient(create_app(path, map_points=20)).post("/v1/score", json={"inputs": test[:200].tolist()})
    assert main(["export", str(path), "--part", "score", "--out", str(tmp_path / "score.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "score.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"x": test[:200].reshape(-1, 1, 8, 8)})[0]
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-5, atol=1e-5, err_msg="aekit score")
    np.testing.assert_allclose(http.json()["scores"], expected, rtol=1e-5, atol=1e-5, err_msg="/v1/score")
    np.testing.assert_allclose(onnx, expected, rtol=1e-4, atol=1e-4, err_msg="onnxruntime")
    run = aekit.load_run(path)
    assert (run.fitted.score_spec.blur, run.fitted.score_spec.latent, run.fitted.score_spec.neighbors) == (
        options.get("error_blur", 1), options.get("latent_distance", True), options.get("code_neighbors", 0))
    figure = run.analysis.plot("anomalies")  # the report's figure: the test images the run's own score ranks highest
    scores = run.score(run.data().x_test)
    shown = [float(ax.get_title()) for ax in figure.axes[:8]]
    np.testing.assert_allclose(shown, np.sort(scores)[::-1][:8], rtol=1e-2)
    assert "rows.npy" in run.data_config.name and run.history() and "test_mse_per_pixel" in run.metrics()
    from aekit.faces.report import saved_estimator_note

    note = " ".join(saved_estimator_note(path, run))
    total = len(train)
    assert f"fitted on all {total} rows it saved" in note and "in-sample, not held out" in note
    capsys.readouterr()


def test_saving_into_a_folder_that_holds_something_is_refused(tmp_path):
    train, _, _ = one_digit_of_sklearn_digits()
    detector = AutoEncoderOutlierDetector(max_epochs=1, random_state=0, device=DEVICE).fit(train)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(aekit.CheckpointError, match=r"taken already holds something; save\(path, overwrite=True\)"):
        detector.save(tmp_path / "taken")
    detector.save(tmp_path / "mine")
    with pytest.raises(aekit.CheckpointError, match="already holds something"):
        detector.save(tmp_path / "mine")  # a second time: said, with the way to replace it
    other = AutoEncoderOutlierDetector(max_epochs=2, random_state=1, device=DEVICE).fit(train)
    other.save(tmp_path / "mine", overwrite=True)
    run = aekit.load_run(tmp_path / "mine")
    np.testing.assert_allclose(run.score(run.space.to_model(train[:5])), -other.score_samples(train[:5]), rtol=1e-5)
    assert not list(tmp_path.glob(".mine*"))  # nothing left beside it


def test_values_near_1e30_are_standardized_in_float64_and_train():
    X = 1e30 * (1 + np.random.default_rng(0).random((100, 4))).astype(np.float32)  # float32: moments overflowed there
    ae = AutoEncoderTransformer(2, max_epochs=2, random_state=0, device=DEVICE).fit(X)
    assert np.isfinite(ae.transform(X)).all() and np.isfinite(ae.mean_).all()
    assert np.allclose(ae.inverse_transform(ae.transform(X)) / 1e30, X / 1e30, atol=1.0)


def test_scale_chooses_from_the_data_and_false_keeps_the_values(noisy_low_rank):
    pixels = np.random.default_rng(0).random((60, 8))
    assert AutoEncoderTransformer(2, max_epochs=1, scale="auto").fit(pixels).fitted_.space.scaling == "unit"
    assert AutoEncoderTransformer(2, max_epochs=1, scale="auto").fit(noisy_low_rank).fitted_.space.scaling == "standard"
    kept = AutoEncoderTransformer(2, max_epochs=1, scale=False).fit(noisy_low_rank)
    assert not hasattr(kept, "mean_")
    np.testing.assert_array_equal(kept.fitted_.space.to_model(noisy_low_rank).numpy(), noisy_low_rank.astype(np.float32))
    with pytest.raises(ValueError, match="scale='yes' must be True, False or 'auto'"):
        AutoEncoderTransformer(2, scale="yes").fit(noisy_low_rank)
