"""aekit: autoencoders in PyTorch, from the textbook chapter to your own data.

>>> import aekit
>>> model = aekit.AutoEncoder((1, 28, 28), latent_dim=32)
>>> config = aekit.make_config("vae", body="conv", beta=4.0)   # a body x an objective, options routed to each
>>> run = aekit.pretrained("chapter")      # a trained run that ships with aekit (also: codec, conv30)
>>> history, metrics = aekit.train_run("runs/quick", train_config=aekit.TrainConfig(epochs=1))  # doctest: +SKIP

The names below load their module when first used (PEP 562), so ``import aekit`` is quick and ``aekit --help``
needs no torch.
"""

from ._version import __version__

WHERE = {  # public name -> the module that defines it
    "MNIST": "data.datasets", "Data": "core.space", "Space": "core.space", "Fitted": "core.fitted",
    "ScoreSpec": "core.fitted", "DataConfig": "configs", "TrainConfig": "configs", "AekitError": "errors",
    "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors", "TrainingDiverged": "errors",
    "BODIES": "model.config", "OBJECTIVES": "model.config", "PRESETS": "model.config", "SHORTCUTS": "model.config",
    "ConvBody": "model.parts", "LinearBody": "model.parts", "MLPBody": "model.parts", "ModelConfig": "model.config",
    "Plain": "model.parts", "Denoising": "model.parts", "Imputing": "model.parts", "Sparse": "model.parts",
    "Variational": "model.parts", "VectorQuantized": "model.parts", "Rate": "model.parts", "TopK": "model.parts",
    "make_config": "model.config", "AutoEncoder": "model.autoencoder", "build_model": "model.autoencoder",
    "train": "training.loop", "Run": "run.runs", "evaluate_run": "run.runs", "load_run": "run.runs",
    "train_run": "run.training", "pretrained": "run.runs", "AutoEncoderOutlierDetector": "faces.estimator",
    "AutoEncoderTransformer": "faces.estimator", "AutoEncoderImputer": "faces.imputer",
    "SeriesOutlierDetector": "faces.series_detector",
}
__all__ = [*WHERE, "__version__"]


def __getattr__(name: str):
    import importlib

    if name in WHERE:
        value = getattr(importlib.import_module(f".{WHERE[name]}", __name__), name)
    else:
        try:  # a layer's folder: aekit.data, aekit.run, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            raise AttributeError(f"module 'aekit' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
