import json
import os
import re
import shutil
import subprocess

import pytest
import torch

import aekit
from aekit import evaluate, report
from aekit.models import AutoEncoder
from aekit.train import TrainConfig, train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

FIGURES = ["reconstructions", "samples", "latent", "interpolation", "curves"]


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
    assert "PCA (8 components)" in page and "Holes:" in page and "logistic regression" in page
    assert "http://" not in page and "https://" not in page  # opens without a network


def find_browser():
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


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
