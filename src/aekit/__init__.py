"""aekit: autoencoders in PyTorch, from the textbook chapter to your own data.

>>> import aekit
>>> model = aekit.AutoEncoder((1, 28, 28), latent_dim=32)
>>> config = aekit.make_config("vae", body="conv", beta=4.0)   # a body x an objective, options routed to each
>>> history, metrics = aekit.train_run("runs/quick", train_config=aekit.TrainConfig(epochs=1))  # doctest: +SKIP
"""

from ._version import __version__
from .data import MNIST, Data, DataConfig
from .errors import AekitError, CheckpointError, ConfigError, DataError, TrainingDiverged
from .models import (
    BODIES, OBJECTIVES, PRESETS, SHORTCUTS, AutoEncoder, ConvBody, Denoising, Imputing, LinearBody, MLPBody,
    ModelConfig, Plain, Sparse, Variational, VectorQuantized, build_model, make_config,
)  # fmt: skip
from .train import TrainConfig, train
from .runs import Run, evaluate_run, load_run, train_run
from .estimator import AutoEncoderOutlierDetector, AutoEncoderTransformer
from .imputer import AutoEncoderImputer

__all__ = [
    "MNIST", "Data", "DataConfig", "AekitError", "CheckpointError", "ConfigError", "DataError",
    "TrainingDiverged", "BODIES", "OBJECTIVES", "PRESETS", "SHORTCUTS", "AutoEncoder", "ConvBody", "Denoising",
    "Imputing", "LinearBody", "MLPBody", "ModelConfig", "Plain", "Sparse", "Variational", "VectorQuantized", "build_model",
    "make_config", "TrainConfig", "train", "Run", "evaluate_run", "load_run", "train_run",
    "AutoEncoderOutlierDetector", "AutoEncoderTransformer", "AutoEncoderImputer", "__version__",
]  # fmt: skip
