"""Sample quality of a model's priors beside the floor and the reconstructions, in one feature space (the shipped
MNIST classifier's, or PCA's): measured when a prior is fitted and read back from the analysis cache by ``aekit
evaluate``."""

from __future__ import annotations

import time

import torch

from ..analysis.evaluate import cached, model_fingerprint
from ..core.fitted import batched, reconstruct
from ..core.space import Data
from ..model.autoencoder import AutoEncoder
from .quality import Reference, fits_classifier

GENERATION_METRICS = ("fd", "precision", "recall", "confidence", "label_entropy")


@torch.no_grad()
def generation_metrics(model: AutoEncoder, data: Data, priors: dict, n: int = 10_000, seed: int = 0,
                       prior_keys: dict[str, str] | None = None) -> dict:  # fmt: skip
    """Sample quality of each prior (name -> :class:`aekit.generation.priors.Prior`) beside its floor and ceiling, as
    ``gen_<row>_<metric>`` (:data:`GENERATION_METRICS`), measured against the test rows in one feature space.

    Rows: ``floor`` (``n`` training rows: what real data scores; no generator can be expected below it),
    ``reconstructions`` (the model's reconstructions of those training rows: what its decoder makes of the codes
    of real data, about the best any prior of this model can do), then each prior's ``n`` decoded samples. The space
    is the shipped MNIST classifier's features for 1x28x28 images in [0, 1] (``gen_pca_components`` = 0), else the
    first ``gen_pca_components`` principal components of the training rows (:mod:`aekit.quality`).

    Each row is computed once: the floor for the data, the others for the model (and the prior, named by its
    ``prior_keys`` entry: a digest of the stored prior), read back from the analysis cache after.
    """
    classifier = fits_classifier(data.input_shape, data.scaling)
    n = min(n, len(data.x_train))
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[:n]
    made: list = []  # the reference (the test rows' features), made once, only where a row is not cached

    def measure(name: str, rows) -> dict[str, float]:
        if not made:
            made.append(Reference.of(data.x_train, data.x_test, classifier))
        out = {f"gen_{name}_{k}": v for k, v in made[0].measure(rows()).items()}
        return out | {"gen_pca_components": 0 if classifier else made[0].space.k}

    key = {"data": data.fingerprint, "n": n, "seed": seed, "classifier": classifier}
    out = {"gen_samples": n, **cached("floor", key, lambda: measure("floor", lambda: data.x_train[pick]))}
    key |= {"model": model_fingerprint(model)}
    out |= cached("reconstructions", key, lambda: measure("reconstructions", lambda: reconstruct(
        model, data.x_train[pick])))  # fmt: skip
    for name, prior in priors.items():
        def sampled(prior=prior, name=name) -> dict[str, float]:
            start = time.perf_counter()
            x = batched(model.decode, model, prior.sample(n, seed).float())
            seconds = time.perf_counter() - start
            return {**measure(name, lambda: x), f"gen_{name}_sample_seconds": seconds}

        out |= cached("prior", {**key, "prior": (prior_keys or {}).get(name, name)}, sampled)
    return out
