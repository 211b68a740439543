"""Latent priors: each fits what it should, samples are a function of the seed, storage round-trips, errors are clear."""

import pytest
import torch

from aekit.generation.parts import DiffusionConfig, fit_prior, from_stored, make_prior
from aekit.errors import ConfigError
from aekit.generation.priors import Mixture, Normal, to_stored

CENTRES = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])


def clusters(n_per=400, seed=0):
    """Three well-separated 2-D clusters and their labels 0, 1, 2."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([c + 0.5 * torch.randn(n_per, 2, generator=generator) for c in CENTRES])
    return codes, torch.arange(3).repeat_interleave(n_per)


def nearest_centre(z):
    return torch.cdist(z.float(), CENTRES).argmin(1)


def test_gaussian_recovers_mean_and_covariance():
    codes = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0)) @ torch.tensor(
        [[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 0.5]]) + torch.tensor([1.0, -2.0, 3.0])  # fmt: skip
    prior = fit_prior("gaussian", codes)
    z = prior.sample(20000, seed=1).double()
    assert torch.allclose(z.mean(0), codes.mean(0).double(), atol=0.05)
    assert torch.allclose(torch.cov(z.T), torch.cov(codes.T.double()), atol=0.1)


def test_gmm_puts_its_samples_in_every_cluster_and_a_conditional_one_in_the_asked_one():
    codes, labels = clusters()
    def off_clusters(z):  # the share of samples more than 2 from every centre (the clusters' spread is 0.5)
        return float(torch.cdist(z.float(), CENTRES).min(1).values.gt(2).float().mean())

    assert off_clusters(fit_prior("gaussian", codes).sample(3000)) > 0.5  # one Gaussian fills the space between
    gmm = fit_prior("gmm", codes, components=3)
    assert off_clusters(gmm.sample(3000)) < 0.01
    near = nearest_centre(gmm.sample(3000, seed=0))
    assert torch.bincount(near, minlength=3).min() > 800  # each cluster gets about a third
    conditional = fit_prior("gmm", codes, labels, components=2)
    assert conditional.labels == [0, 1, 2] and len(conditional.weights) == 6
    for label in range(3):
        assert (nearest_centre(conditional.sample(300, seed=label, label=label)) == label).all()


def test_same_seed_same_samples_and_storage_round_trips():
    codes, labels = clusters(200)
    small = DiffusionConfig(epochs=2, width=32, blocks=1, sample_steps=10)
    for prior in (Normal(2), fit_prior("gaussian", codes), fit_prior("gmm", codes, labels, components=2),
                  fit_prior(small, codes, labels)):  # fmt: skip
        assert torch.equal(prior.sample(50, seed=3), prior.sample(50, seed=3))
        assert not torch.equal(prior.sample(50, seed=3), prior.sample(50, seed=4))
        if isinstance(prior, Normal):
            continue
        stored = to_stored(prior)
        assert stored.meta["kind"] == prior.kind and stored.meta["labels"] == prior.labels
        again = from_stored(stored, 2)
        assert torch.equal(again.sample(50, seed=3), prior.sample(50, seed=3))
        label = 1 if prior.labels else None
        assert torch.equal(again.sample(20, seed=5, label=label), prior.sample(20, seed=5, label=label))
        with pytest.raises(ConfigError, match="another code size"):
            from_stored(stored, 3)


def test_a_conditional_diffusion_prior_learns_the_clusters():
    codes, labels = clusters(500)
    prior = fit_prior(DiffusionConfig(epochs=40, width=64, blocks=2, batch_size=256, sample_steps=50), codes, labels)
    assert prior.final_loss < 0.5
    for label in range(3):
        assert (nearest_centre(prior.sample(200, seed=label, label=label)) == label).float().mean() > 0.9
    near = nearest_centre(prior.sample(900, seed=0))
    assert torch.bincount(near, minlength=3).min() > 150  # unconditional: every cluster
    assert prior.sample(900, seed=0).sub(CENTRES[near]).norm(dim=1).median() < 1.5  # on the clusters, not between


def test_the_errors_are_one_clear_line():
    codes, labels = clusters(50)
    with pytest.raises(ConfigError, match="needs no fitting"):
        make_prior("normal")
    with pytest.raises(ConfigError, match=r"unknown prior 'flow'; choose one of \['normal', 'gaussian', 'gmm'"):
        fit_prior("flow", codes)
    with pytest.raises(ConfigError, match="--components 0 must be at least 1"):
        fit_prior("gmm", codes, components=0)
    with pytest.raises(ConfigError, match="fitted without labels; fit it again with --conditional"):
        fit_prior("gmm", codes, components=2).sample(5, label=1)
    with pytest.raises(ConfigError, match=r"label 7 is not one of the data's labels \[0, 1, 2\]"):
        fit_prior("gaussian", codes, labels).sample(5, label=7)
    with pytest.raises(ConfigError, match="prior 'normal' knows no labels"):
        Normal(2).sample(5, label=1)
    with pytest.raises(ConfigError, match="sample_steps=20 must be at most steps=10"):
        DiffusionConfig(steps=10, sample_steps=20).validate()
    assert isinstance(fit_prior("gmm", codes, components=500), Mixture)  # more components than rows: capped
