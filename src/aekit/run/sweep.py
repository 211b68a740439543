"""The chapter's error against code size: RUN's model trained at each code size beside PCA's (``aekit
error-vs-dim``), reusing finished points and RUN itself where its training is the same."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ..configs import TrainConfig
from ..errors import CheckpointError, ConfigError
from ..model.config import ModelConfig
from .format import write_json
from .rundir import RunDir
from .runs import Run, load_run
from .training import RUN_SCHEMA, train_run

log = logging.getLogger(__name__)


def sweep_error_vs_dim(
    path: str | Path, dims: tuple[int, ...] = (2, 4, 8, 16, 32, 64), epochs: int | None = None, progress: bool = False
) -> dict:
    """Train RUN's model at each code size in ``dims`` (into ``RUN/sweep/k<d>``) and measure it beside PCA.

    A sweep run that already finished with the same settings is reused, not trained again; so is RUN itself at
    its own code size when its first ``epochs`` epochs are that training (:func:`_own_point`). Returns
    ``{"dims", "autoencoder", "pca", "epochs"}`` (test SSE per image) and draws ``RUN/figures/error-vs-dim``.
    """
    base = load_run(path)
    train_config = replace(base.train_config, epochs=epochs or base.train_config.epochs)
    ae, pca = [], []
    for dim in dims:
        out = Path(path) / "sweep" / f"k{dim}"
        model_config = replace(base.model_config, latent_dim=dim)
        own = _own_point(base, train_config.epochs) if dim == base.model_config.latent_dim else None
        if own is not None:
            log.info("error-vs-dim: k=%d is %s itself after %d epochs (the same training), not trained again", dim,
                     path, train_config.epochs)  # fmt: skip
            metrics = own
        elif _finished(out, model_config, train_config):
            metrics = RunDir(out).read_metrics()
        else:
            log.info("error-vs-dim: training k=%d for %d epochs", dim, train_config.epochs)
            _, metrics = train_run(out, model_config, base.data_config, train_config, overwrite=True,
                                   progress=progress, analysis=False)
        ae.append(metrics["test_sse_per_image"])
        pca.append(metrics["pca_test_sse_per_image"])  # each run already measured PCA at its own code size
    result = {"dims": list(dims), "autoencoder": ae, "pca": pca, "epochs": train_config.epochs}
    (Path(path) / "sweep").mkdir(exist_ok=True)  # not made yet when every point was read from RUN
    write_json(Path(path) / "sweep" / "error-vs-dim.json", result)
    from ..analysis import plots

    plots.error_vs_dim(list(dims), ae, pca, train_config.epochs, path=Path(path) / "figures" / "error-vs-dim")
    return result


def _own_point(base: Run, epochs: int) -> dict[str, float] | None:
    """The test SSE per image (autoencoder's and PCA's, named as in metrics.json) of the sweep's point at RUN's own
    code size trained for ``epochs`` epochs with RUN's settings, read from RUN; None when that training would not
    repeat RUN's first ``epochs`` epochs.

    It would when the learning rate does not depend on the number of epochs (``schedule="none"``: the weights
    after epoch E are then the same whether training goes on or not). The autoencoder's error is RUN's history row
    for epoch E (a row without a test error, or none, means training after all); PCA's is RUN's own, computed at
    this code size on the same data. The row is used even when E is RUN's last epoch: metrics.json may be older
    than the history (a resumed run stopped before it finished), and the two agree to about 1e-8 otherwise.
    """
    if base.train_config.schedule != "none":
        return None
    metrics = base.metrics()
    rows = [row for row in base.history() if row["epoch"] == epochs and "test_sse_per_image" in row]
    if not rows or "pca_test_sse_per_image" not in metrics:
        return None
    return {"test_sse_per_image": rows[0]["test_sse_per_image"],
            "pca_test_sse_per_image": metrics["pca_test_sse_per_image"]}  # fmt: skip


def _finished(out: Path, model_config: ModelConfig, train_config: TrainConfig) -> bool:
    if not RunDir(out).has(RunDir.METRICS):
        return False
    try:
        stored = RunDir(out).read_config(RUN_SCHEMA)
    except (ConfigError, CheckpointError):
        return False
    same_model = replace(stored["model"], input_shape=model_config.input_shape, output=model_config.output)
    return same_model == model_config and stored["train"] == train_config
