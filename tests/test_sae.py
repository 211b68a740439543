"""Sparse autoencoders: TopK and BatchTopK codes, unit decoder columns, revived dead latents, features recovered
from data whose features are known, and the commands and metrics that read them."""

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line
from scipy.optimize import linear_sum_assignment

import aekit
from aekit.errors import ConfigError
from aekit.faces.cli import main
from aekit.model.config import make_config
from aekit.model.parts import TopK


def known_features(rows=60_000, dims=16, features=32, active=2.0, seed=0):
    """Sparse sums of ``features`` known unit directions (a small version of benchmarks/sae.py's generator)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(features, dims))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rate = 1 / (np.arange(features) + 4) ** 0.8
    fires = rng.random((rows, features)) < np.minimum(rate * active / rate.sum(), 1)
    x = (fires * np.abs(rng.normal(1, 0.3, size=(rows, features)))) @ directions
    return x.astype(np.float32), directions


def matched_cos(found, truth):
    cos = np.abs(truth @ (found / np.linalg.norm(found, axis=1, keepdims=True)).T)
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


def test_the_code_keeps_k_latents_and_the_decoder_starts_as_the_encoders_transpose():
    model = aekit.build_model(make_config("sae", input_shape=(16,), latent_dim=32, k=3))
    decoder, encoder = model.decoder[0].weight, model.encoder[0].weight
    torch.testing.assert_close(decoder.norm(dim=0), torch.ones(32))
    torch.testing.assert_close(encoder, decoder.T)
    z = model.encode(torch.randn(50, 16))
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all() and ((z > 0).sum(1) == 3).float().mean() > 0.9


def test_a_train_step_keeps_unit_columns_and_dead_latents_get_a_gradient():
    model = aekit.build_model(make_config("sae", input_shape=(16,), latent_dim=32, k=2, dead_rows=10))
    x = torch.randn(64, 16)
    model.bottleneck.rows_since[:8] = 100  # these eight have not fired for 100 rows: dead
    with torch.no_grad():  # and they would not fire now either
        model.encoder[0].bias[:8] = -100.0
    loss, terms = model.loss(x)
    assert float(terms["dead"]) > 0 and float(terms["aux"].detach()) > 0
    loss.backward()
    assert model.encoder[0].weight.grad[:8].abs().sum() == 0  # ReLU'd to zero: only a live code could reach them ...
    model.config.objective.after_step(model)
    torch.testing.assert_close(model.decoder[0].weight.norm(dim=0), torch.ones(32))


def test_batch_topk_keeps_k_per_row_on_average_and_learns_a_threshold_for_inference():
    model = aekit.build_model(make_config("sae", input_shape=(16,), latent_dim=32, k=3, selection="batch"))
    x = torch.randn(256, 16)
    model.train()
    z = model.config.objective.encode(model, x)
    assert abs(float((z > 0).sum(1).float().mean()) - 3) < 0.05
    assert float(model.bottleneck.threshold) > 0
    model.eval()
    assert float((model.encode(x) > 0).sum(1).float().mean()) > 0


@pytest.mark.parametrize("options, message", [
    (dict(model="sae", body="mlp"), "the topk objective needs the linear body"),
    (dict(model="sae", k=40), "k=40 must be from 1 to the code size latent_dim=32"),
    (dict(model="mlp", k=4), "option 'k' does not apply to a mlp body with the plain objective: it belongs to the topk"),
    (dict(model="sae", selection="all"), "selection='all' must be one of"),
])  # fmt: skip
def test_options_apply_only_to_a_sparse_autoencoder(options, message):
    with pytest.raises(ConfigError, match=message):
        make_config(options.pop("model"), input_shape=(16,), latent_dim=32, **options)


@pytest.fixture(scope="module")
def sae_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sae")
    x, truth = known_features()
    np.save(tmp / "train.npy", x)
    assert main(["train", "--data", str(tmp / "train.npy"), "--model", "sae", "--latent-dim", "32", "--k", "2",
                 "--epochs", "6", "--no-progress", "--device", "cpu", "--out", str(tmp / "run")]) == 0  # fmt: skip
    return tmp, truth


def test_features_are_recovered_and_every_command_reads_the_run(sae_run, capsys):
    tmp, truth = sae_run
    run = aekit.load_run(tmp / "run")
    features = run.analysis.features()
    assert features["directions"].shape == (32, 16)
    np.testing.assert_allclose(np.linalg.norm(features["directions"], axis=1), 1, rtol=1e-6)
    assert matched_cos(features["directions"], truth) > 0.85  # found again, in the data's units (0.888 when written)
    metrics = run.metrics()
    assert abs(metrics["sae_l0"] - 2) < 0.5 and metrics["sae_dead"] < 0.2 and metrics["sae_fvu"] < metrics["sae_pca_fvu"]
    capsys.readouterr()
    assert main(["features", str(tmp / "run"), "--out", str(tmp / "dirs.npy")]) == 0
    assert "wrote 32 feature directions (32, 16)" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp / "dirs.npy"), features["directions"], rtol=1e-6)
    for command in ("encode", "reconstruct"):
        assert main([command, str(tmp / "run"), "--input", str(tmp / "train.npy"), "--out", str(tmp / "o.npy")]) == 0
    assert ((np.load(tmp / "o.npy") != 0).sum(1) > 0).all()
    assert main(["evaluate", str(tmp / "run")]) == 0
    said = capsys.readouterr().out
    assert "sparse code on the test rows" in said and "PCA (k=2)" in said


def test_features_of_a_run_that_is_not_sparse_is_one_line(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--latent-dim", "3", "--hidden", "8", "--epochs", "1", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "plain")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["features", str(tmp_path / "plain"), "--out", str(tmp_path / "d.npy")]) == 2
    one_error_line(capsys, "is not a sparse autoencoder", "--model sae")


def test_the_estimators_take_the_topk_objective():
    x, truth = known_features(rows=20_000)
    transformer = aekit.AutoEncoderTransformer(32, body="linear", objective="topk", k=2, max_epochs=5, random_state=0,
                                               device="cpu").fit(x)  # fmt: skip
    codes = transformer.transform(x[:100])
    assert ((codes > 0).sum(1) <= 2).all() and isinstance(transformer.fitted_.config.objective, TopK)
    columns = transformer.model_.decoder[0].weight.detach().numpy().T * transformer.scale_
    assert matched_cos(columns, truth) > 0.7


def test_the_report_of_an_image_sae_shows_its_metrics_and_features(tmp_path):
    from aekit.faces.report import write_report

    aekit.train_run(tmp_path / "sae", make_config("sae", latent_dim=48, k=4), aekit.DataConfig(name="digits"),
                    aekit.TrainConfig(epochs=2, device="cpu"), progress=False, analysis=False)  # fmt: skip
    page = write_report(tmp_path / "sae").read_text()
    assert "id='features'" in page and "latents active per test row (L0)" in page and "never active" in page


def test_the_headline_compares_with_pca_at_the_l0_and_leaves_out_what_does_not_apply(sae_run):
    tmp, _ = sae_run
    run = aekit.load_run(tmp / "run")
    metrics = run.metrics()
    assert metrics["latent_dim"] == 32 and metrics["pca_components"] == 2 and metrics["pca_at_l0"] == 1.0
    from aekit.faces.report import format_metrics

    assert "PCA (k=2: the L0)" in format_metrics(metrics)
    assert "holes" not in metrics  # random dense codes say nothing of a sparse one
    assert "samples" not in run.analysis.kinds() and "interpolation" not in run.analysis.kinds()
