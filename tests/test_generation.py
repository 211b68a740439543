"""Generation end to end: fitting priors into a run, sampling, measuring, the report, and the CLI's commands.

(The priors and metrics themselves are tested in test_priors.py and test_quality.py.)
"""

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.configs import TrainConfig
from aekit.generation.parts import PRIORS, DiffusionConfig, PriorConfig
from aekit.generation.priors import Prior
from aekit.options import option
from aekit.errors import CheckpointError, ConfigError
from aekit.generation.quality import ClassifierSpace
from aekit.run.runs import load_run
from aekit.run.training import train_run

SMALL_DIFFUSION = DiffusionConfig(epochs=3, width=64, blocks=1, sample_steps=20)


def files_of(path):
    return {p.relative_to(path): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A small MNIST autoencoder (10,000 training images, 8-D code, 8 epochs): seconds to train."""
    path = tmp_path_factory.mktemp("gen") / "run"
    train_run(path, aekit.make_config(latent_dim=8), aekit.DataConfig(name="mnist", limit=10_000),
              TrainConfig(epochs=8, lr=3e-3, device="cpu"), progress=False, analysis=False)  # fmt: skip
    return path


def test_fitting_a_prior_writes_only_its_files_and_samples_are_seeded(mnist_run):
    before = files_of(mnist_run)
    run = load_run(mnist_run)
    run.priors.fit("gmm", components=5)
    after = files_of(mnist_run)
    assert {str(p) for p in set(after) - set(before)} == {"priors/gmm.json", "priors/gmm.safetensors"}
    assert all(after[p] == digest for p, digest in before.items())  # every file the run had: byte-identical
    again = load_run(mnist_run)
    assert again.priors.names() == ["normal", "gmm"]
    x = again.priors.sample(16, "gmm", seed=3)
    assert x.shape == (16, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, load_run(mnist_run).priors.sample(16, "gmm", seed=3))
    assert not torch.equal(x, again.priors.sample(16, "gmm", seed=4))


def test_the_priors_fill_the_holes_in_numbers(mnist_run):
    run = load_run(mnist_run)
    run.priors.fit("gaussian")
    run.priors.fit("gmm", components=10)
    metrics = run.priors.metrics(n=2000)
    assert metrics["gen_pca_components"] == 0 and metrics["gen_samples"] == 2000
    fd = {name: metrics[f"gen_{name}_fd"] for name in ("floor", "reconstructions", "normal", "gaussian", "gmm")}
    # the published ordering: N(0, I) is far off, a fitted Gaussian better, a mixture better still; real data best
    assert fd["floor"] < fd["reconstructions"] < fd["gmm"] < fd["gaussian"] < fd["normal"], fd
    assert metrics["gen_normal_recall"] < metrics["gen_gmm_recall"]
    assert 0 < metrics["gen_gmm_label_entropy"] <= np.log(10) + 1e-9


def test_a_conditional_prior_draws_the_digit_asked_for(mnist_run):
    run = load_run(mnist_run)
    run.priors.fit("gmm", conditional=True, components=3)
    _, probabilities = ClassifierSpace().features(run.priors.sample(300, "gmm", label=7, seed=0))
    assert (probabilities.argmax(1) == 7).mean() > 0.8
    with pytest.raises(ConfigError, match=r"label 11 is not one of the data's labels \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]"):
        run.priors.sample(5, "gmm", label=11)
    run.priors.fit("gmm", components=5)  # back to the unconditional one for the other tests


def test_a_diffusion_prior_is_stored_and_a_retrained_model_refuses_its_old_priors(tmp_path):
    path = tmp_path / "run"
    train_run(path, aekit.make_config(latent_dim=4, hidden=(16,)), aekit.DataConfig(name="digits"),
              TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False, analysis=False)  # fmt: skip
    run = load_run(path)
    prior = run.priors.fit(SMALL_DIFFUSION, conditional=True)
    assert prior.labels == list(range(10))
    assert torch.equal(load_run(path).priors.sample(8, "diffusion", label=3, seed=1), run.priors.sample(8, "diffusion", label=3,
                                                                                          seed=1))  # fmt: skip
    guided = run.priors.sample(8, "diffusion", label=3, seed=1, guidance=2.0)
    assert guided.shape == (8, 1, 8, 8) and not torch.equal(guided, run.priors.sample(8, "diffusion", label=3, seed=1))
    with pytest.raises(ConfigError, match="--guidance applies to a conditional diffusion prior"):
        run.priors.sample(8, "diffusion", seed=1, guidance=2.0)
    metrics = run.evaluate()  # a run with priors: its sample quality is measured, in a PCA space (8x8 images)
    assert metrics["gen_pca_components"] == 32 and "gen_diffusion_fd" in run.metrics()
    train_run(path, epochs=3, resume=True, progress=False, analysis=False)
    with pytest.raises(CheckpointError, match="fitted to an earlier state of the model .*fit it again: aekit fit-prior "
                       ".* --prior diffusion --conditional$"):  # the hint fits the same kind of prior again
        load_run(path).priors.sample(4, "diffusion")
    assert load_run(path).priors.sample(4, "normal").shape == (4, 1, 8, 8)


def test_the_report_shows_each_prior_beside_the_floor(mnist_run):
    from aekit.faces.report import write_report

    run = load_run(mnist_run)
    run.priors.fit("gmm", components=5)  # (each test fits what it reads: they also pass one by one)
    metrics = run.evaluate()
    assert "gen_gmm_fd" in metrics
    from aekit.faces.report import format_metrics

    text = format_metrics(metrics)
    assert "FD (aekit MNIST classifier)" in text and "floor (train rows)" in text and "prior gmm" in text
    html = write_report(mnist_run).read_text()
    assert "Samples from the latent priors, measured" in html and "floor: training images" in html
    assert "prior: gmm" in html and "FD (aekit MNIST classifier)" in html and "id='priors'" in html


def test_fit_prior_and_sample_from_the_cli(mnist_run, tmp_path, capsys):
    assert exit_code(["fit-prior", str(mnist_run), "--prior", "gaussian"]) == 0
    assert "fitted the gaussian prior" in capsys.readouterr().out
    for suffix in (".npy", ".png"):
        first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        for out in (first, second):
            assert exit_code(["sample", str(mnist_run), "--prior", "gaussian", "--n", "25", "--seed", "2",
                              "--out", str(out)]) == 0  # fmt: skip
        assert first.read_bytes() == second.read_bytes()  # same seed, same file
    rows = np.load(tmp_path / "a.npy")
    assert rows.shape == (25, 1, 28, 28) and rows.dtype == np.float32 and 0 <= rows.min() and rows.max() <= 1
    from PIL import Image

    assert Image.open(tmp_path / "a.png").size == (4 * (5 * 29 - 1), 4 * (5 * 29 - 1))  # each pixel drawn 4x4: seen


def test_generation_errors_are_one_line_and_exit_2(mnist_run, low_rank, tmp_path, capsys):
    load_run(mnist_run).priors.fit("gmm", components=3)  # one without labels
    run = str(mnist_run)
    out = str(tmp_path / "s.npy")
    cases = [
        (["sample", run, "--prior", "diffusion", "--n", "4", "--out", out], "has no 'diffusion' prior; fit it first"),
        (["sample", run, "--prior", "flow", "--n", "4", "--out", out], "invalid choice: 'flow'"),
        (["sample", run, "--prior", "gmm", "--label", "3", "--n", "4", "--out", out], "fitted without labels"),
        (["sample", run, "--label", "3", "--n", "4", "--out", out], "prior 'normal' knows no labels"),
        (["sample", run, "--n", "0", "--out", out], "--n 0 must be a positive number of samples"),
        (["sample", run, "--n", "4", "--out", str(tmp_path / "no" / "such" / "s.npy")], "does not exist or is not writable"),
        (["sample", run, "--n", "4", "--out", str(tmp_path / "s.txt")], "unsupported output type"),
        (["fit-prior", run, "--prior", "normal"], "invalid choice: 'normal'"),
    ]  # fmt: skip
    for argv, needle in cases:
        assert exit_code(argv) == 2, argv
        one_error_line(capsys, needle)
    table = tmp_path / "table"
    train_run(table, aekit.make_config(latent_dim=2, hidden=(8,)), aekit.DataConfig(name=str(low_rank)),
              TrainConfig(epochs=1, device="cpu"), progress=False, analysis=False)  # fmt: skip
    assert exit_code(["sample", str(table), "--label", "1", "--n", "4", "--out", out]) == 2
    one_error_line(capsys, "has no labels, so there is no class to ask for")
    assert exit_code(["fit-prior", str(table), "--prior", "gmm", "--conditional"]) == 2
    one_error_line(capsys, "--conditional needs labels")
    assert exit_code(["sample", str(table), "--n", "4", "--out", str(tmp_path / "t.png")]) == 2
    one_error_line(capsys, "a .png grid needs image data")


@dataclass
class Toy(PriorConfig, Prior):
    """A prior of one class and one registry line: the training codes' mean plus ``scale`` times N(0, I) noise."""

    kind: ClassVar[str] = "toy"
    help: ClassVar[str] = "the codes' mean plus scaled N(0, I) noise"

    scale: float = option(1.0, "the noise's scale")

    def fit(self, codes, labels=None, seed=0, progress=None):
        self.mean = codes.double().mean(0)
        return self

    def load(self, meta, tensors, latent_dim, where):
        self.mean = tensors["mean"]
        return self

    def sample(self, n, seed=0, label=None):
        self.check_label(label)
        noise = torch.randn(n, len(self.mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return (self.mean + self.scale * noise).float()

    def state(self):
        return {"scale": self.scale}, {"mean": self.mean}


def test_a_new_prior_is_one_class_and_one_registry_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PRIORS, "toy", Toy)  # the registry line
    path = tmp_path / "run"
    train_run(path, aekit.make_config(latent_dim=4, hidden=(16,)), aekit.DataConfig(name="digits"),
              TrainConfig(epochs=2, device="cpu"), progress=False, analysis=False)  # fmt: skip
    assert exit_code(["fit-prior", str(path), "--prior", "toy", "--scale", "0.5"]) == 0  # its flag, generated
    stored = json.loads((path / "priors" / "toy.json").read_text())
    assert stored["kind"] == "toy" and stored["scale"] == 0.5  # its options stored with it
    run = load_run(path)
    codes = run.encode(run.data().x_train).double()
    prior = run.priors["toy"]
    assert prior.scale == 0.5 and torch.allclose(prior.mean, codes.mean(0))
    assert run.priors.names() == ["normal", "toy"]
    out = tmp_path / "s.npy"
    assert exit_code(["sample", str(path), "--prior", "toy", "--n", "8", "--seed", "3", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), run.decode(prior.sample(8, seed=3)).numpy(), atol=1e-6)
    assert exit_code(["fit-prior", str(path), "--prior", "gmm", "--scale", "2"]) == 2
    one_error_line(capsys, "option --scale does not apply to the gmm prior: it belongs to the toy prior")
