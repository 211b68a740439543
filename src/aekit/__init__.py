"""aekit: autoencoders in PyTorch, from the textbook chapter to your own data.

>>> import aekit
>>> model = aekit.AutoEncoder((1, 28, 28), latent_dim=32)
>>> config = aekit.make_config("vae", body="conv", beta=4.0)   # a body x an objective, options routed to each
>>> history, metrics = aekit.train_run("runs/quick", train_config=aekit.TrainConfig(epochs=1))  # doctest: +SKIP

The names below load their module when first used (PEP 562), so ``import aekit`` is quick and ``aekit --help``
needs no torch.
"""

from ._version import __version__

WHERE = {  # public name -> the module that defines it
    "MNIST": "data", "Data": "space", "DataConfig": "configs", "AekitError": "errors", "CheckpointError": "errors",
    "ConfigError": "errors", "DataError": "errors", "TrainingDiverged": "errors", "BODIES": "parts",
    "OBJECTIVES": "parts", "PRESETS": "parts", "SHORTCUTS": "parts", "AutoEncoder": "models", "ConvBody": "parts",
    "Denoising": "parts", "Imputing": "parts", "LinearBody": "parts", "MLPBody": "parts", "ModelConfig": "parts",
    "Plain": "parts", "Sparse": "parts", "Variational": "parts", "VectorQuantized": "parts", "Rate": "parts",
    "TopK": "parts", "build_model": "models", "make_config": "parts", "TrainConfig": "configs", "train": "train",
    "Run": "runs", "evaluate_run": "runs", "load_run": "runs", "train_run": "runs",
    "AutoEncoderOutlierDetector": "estimator", "AutoEncoderTransformer": "estimator", "AutoEncoderImputer": "imputer",
}  # fmt: skip
__all__ = [*WHERE, "__version__"]


def __getattr__(name: str):
    import importlib

    if name in WHERE:
        value = getattr(importlib.import_module(f".{WHERE[name]}", __name__), name)
    else:
        try:  # a submodule: aekit.data, aekit.runs, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            raise AttributeError(f"module 'aekit' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
