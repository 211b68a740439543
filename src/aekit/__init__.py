"""aekit: autoencoders in PyTorch, from the textbook chapter to your own data.

>>> import aekit
>>> model = aekit.AutoEncoder((1, 28, 28), latent_dim=32)
>>> history, metrics = aekit.train_run("runs/quick", train_config=aekit.TrainConfig(epochs=1))  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .data import MNIST, Data, DataConfig  # noqa: E402
from .errors import AekitError, CheckpointError, ConfigError, DataError, TrainingDiverged  # noqa: E402
from .models import MODELS, PRESETS, AutoEncoder, ModelConfig, build_model  # noqa: E402
from .train import TrainConfig, train  # noqa: E402
from .runs import Run, evaluate_run, load_run, train_run  # noqa: E402
from .estimator import AutoEncoderOutlierDetector, AutoEncoderTransformer  # noqa: E402

__all__ = [
    "MNIST", "Data", "DataConfig", "AekitError", "CheckpointError", "ConfigError", "DataError",
    "TrainingDiverged", "MODELS", "PRESETS", "AutoEncoder", "ModelConfig", "build_model", "TrainConfig",
    "train", "Run", "evaluate_run", "load_run", "train_run", "AutoEncoderOutlierDetector", "AutoEncoderTransformer",
    "__version__",
]  # fmt: skip
