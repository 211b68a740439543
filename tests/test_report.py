import json
import os
import re
import shutil
import subprocess
from dataclasses import replace

import pytest
import torch

import aekit
from aekit.analysis import evaluate
from aekit.configs import TrainConfig
from aekit.faces import report
from aekit.model.autoencoder import AutoEncoder
from aekit.run import sweep
from aekit.run.rundir import RunDir
from aekit.training.loop import train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

FIGURES = ["reconstructions", "samples", "latent", "interpolation", "anomalies", "curves"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run"
    aekit.train_run(path, aekit.make_config(latent_dim=8, hidden=(32,)), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=3, batch_size=64, device=DEVICE), progress=False)  # fmt: skip
    return path


def test_report_embeds_every_figure(run):
    out = report.write_report(run)
    page = out.read_text()
    for name in FIGURES:
        assert (run / "figures" / f"{name}.png").is_file() and (run / "figures" / f"{name}.svg").is_file()
        assert f"id='{name}'" in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) == len(FIGURES)
    assert "PCA (k=8)" in page and "Holes:" in page and "logistic regression" in page
    assert "http://" not in page and "https://" not in page  # opens without a network


def find_browser():
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_sweep_reads_the_runs_own_code_size_from_the_run_and_trains_the_others(tmp_path):
    path, model_config, data_config = tmp_path / "run", aekit.make_config(latent_dim=3, hidden=(16,)), \
        aekit.DataConfig(name="digits")  # fmt: skip
    config = TrainConfig(epochs=3, batch_size=64, device=DEVICE)
    aekit.train_run(path, model_config, data_config, config, progress=False)
    history, metrics = RunDir(path).read_history(), RunDir(path).read_metrics()
    # after as many epochs as the run had: its last row, which its final metrics match; nothing is trained
    assert sweep.sweep_error_vs_dim(path, dims=(3,))["autoencoder"] == [history[2]["test_sse_per_image"]]
    assert history[2]["test_sse_per_image"] == pytest.approx(metrics["test_sse_per_image"], rel=1e-6)
    assert [p.name for p in (path / "sweep").iterdir()] == ["error-vs-dim.json"]
    result = sweep.sweep_error_vs_dim(path, dims=(2, 3), epochs=2)
    assert (path / "sweep" / "k2").is_dir() and not (path / "sweep" / "k3").exists()  # k=3 was not trained again
    assert result["autoencoder"][1] == history[1]["test_sse_per_image"]  # the run's test error after epoch 2
    assert result["pca"][1] == metrics["pca_test_sse_per_image"]
    # the numbers a 2-epoch run of the same model and settings gets
    _, alone = aekit.train_run(tmp_path / "alone", model_config, data_config, replace(config, epochs=2),
                               progress=False, analysis=False)  # fmt: skip
    assert result["autoencoder"][1] == pytest.approx(alone["test_sse_per_image"], rel=1e-5)
    assert result["pca"][1] == alone["pca_test_sse_per_image"]


def test_sweep_trains_the_runs_own_code_size_when_its_learning_rate_depends_on_the_epochs(tmp_path):
    path = tmp_path / "run"
    aekit.train_run(path, aekit.make_config(latent_dim=3, hidden=(16,)), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=2, batch_size=64, schedule="cosine", device=DEVICE), progress=False)  # fmt: skip
    result = sweep.sweep_error_vs_dim(path, dims=(3,), epochs=1)
    assert (path / "sweep" / "k3").is_dir()
    # cosine over one epoch is not the first half of cosine over two, so the run's epoch-1 error is not this point's
    assert result["autoencoder"][0] != RunDir(path).read_history()[0]["test_sse_per_image"]


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
def test_report_renders_in_a_real_browser(run, tmp_path):
    page = report.write_report(run).read_text()
    probe = ("<script>addEventListener('load', () => document.body.setAttribute('data-images', JSON.stringify("
             "[...document.images].map(i => [i.alt, i.naturalWidth, i.complete]))));</script></body>")
    (tmp_path / "check.html").write_text(page.replace("</body>", probe))
    result = subprocess.run(
        [find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         (tmp_path / "check.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'data-images="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert sorted(alt for alt, _, _ in images) == sorted(FIGURES)
    assert all(width > 0 and complete for _, width, complete in images), images


def test_probes_prefer_a_trained_autoencoder(digits):
    torch.manual_seed(0)
    untrained = AutoEncoder(digits.input_shape, latent_dim=8, hidden=(32,))
    trained = AutoEncoder(digits.input_shape, latent_dim=8, hidden=(32,))
    train(trained, digits, TrainConfig(epochs=20, batch_size=64, lr=3e-3, device=DEVICE), progress=False)
    before, after = evaluate.feature_quality(untrained, digits), evaluate.feature_quality(trained, digits)
    assert after["probe_logreg_ae"] > before["probe_logreg_ae"]
    assert after["probe_knn_ae"] > before["probe_knn_ae"]
    assert before["probe_knn_pixels"] == after["probe_knn_pixels"]  # the baselines do not depend on the model


def test_holes_separate_random_codes_from_real_ones(digits):
    torch.manual_seed(0)
    model = AutoEncoder(digits.input_shape, latent_dim=8, hidden=(32,))
    train(model, digits, TrainConfig(epochs=20, batch_size=64, lr=3e-3, device=DEVICE), progress=False)
    measured = evaluate.holes(model, digits.x_test, n_samples=150)
    assert 0.5 <= measured["holes_fitted"] <= measured["holes"] <= 1.0
