"""aekit: autoencoders in PyTorch, from the textbook chapter to your own data.

>>> import aekit
>>> model = aekit.AutoEncoder((1, 28, 28), latent_dim=32)
>>> config = aekit.make_config("vae", body="conv", beta=4.0)   # a body x an objective, options routed to each
>>> history, metrics = aekit.train_run("runs/quick", train_config=aekit.TrainConfig(epochs=1))  # doctest: +SKIP
"""

__version__ = "0.2.0"

from .data import MNIST, Data, DataConfig  # noqa: E402
from .errors import AekitError, CheckpointError, ConfigError, DataError, TrainingDiverged  # noqa: E402
from .models import (  # noqa: E402
    BODIES, OBJECTIVES, PRESETS, SHORTCUTS, AutoEncoder, ConvBody, Denoising, LinearBody, MLPBody, ModelConfig,
    Plain, Sparse, Variational, VectorQuantized, build_model, make_config,
)  # fmt: skip
from .train import TrainConfig, train  # noqa: E402
from .runs import Run, evaluate_run, load_run, train_run  # noqa: E402
from .estimator import AutoEncoderOutlierDetector, AutoEncoderTransformer  # noqa: E402

__all__ = [
    "MNIST", "Data", "DataConfig", "AekitError", "CheckpointError", "ConfigError", "DataError",
    "TrainingDiverged", "BODIES", "OBJECTIVES", "PRESETS", "SHORTCUTS", "AutoEncoder", "ConvBody", "Denoising",
    "LinearBody", "MLPBody", "ModelConfig", "Plain", "Sparse", "Variational", "VectorQuantized", "build_model",
    "make_config", "TrainConfig", "train", "Run", "evaluate_run", "load_run", "train_run",
    "AutoEncoderOutlierDetector", "AutoEncoderTransformer", "__version__",
]  # fmt: skip
