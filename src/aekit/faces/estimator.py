"""scikit-learn estimators: the autoencoder as a drop-in nonlinear PCA, and as an anomaly detector.

Two classes sharing one fitting routine, rather than one class with both roles, because scikit-learn's
contracts differ: a transformer's ``fit_transform`` must equal ``fit().transform`` while an outlier detector's
``fit_predict`` returns labels, and ``check_estimator`` runs different checks on each.

The detector follows scikit-learn's contract exactly (``score_samples`` higher for normal rows,
``decision_function = score_samples - offset_`` negative for outliers, ``predict`` in {1, -1}) and also carries
PyOD's names (``decision_scores_``: training errors, higher is more abnormal; ``threshold_``; ``labels_`` in
{0, 1}); its docstring maps one onto the other.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..analysis.tensorboard import TensorBoardLog
from ..configs import DEVICES, LOSSES, DataConfig, TrainConfig
from ..core.fitted import Fitted, ScoreSpec
from ..core.space import Data, Space
from ..model.autoencoder import build_model
from ..model.config import ModelConfig, make_config, part_options
from ..model.parts import MLPBody
from ..run.format import write_json
from ..run.rundir import RunDir
from ..training.loop import train

ROWS_FILE = "rows.npy"  # the rows an estimator was fitted on, kept in the run directory its save() writes


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Every parameter's rule, once: name -> (test, what the value must be). Each estimator checks the names it has
# (scikit-learn's ``_parameter_constraints`` idea); a bad value is one ValueError naming it.
RULES = {
    "n_components": (lambda v: _integer(v) and v >= 1, "a positive integer"),
    "max_epochs": (lambda v: _integer(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _integer(v) and v >= 1, "a positive integer"),
    "lr": (lambda v: _real(v) and v > 0, "a positive number"),
    "loss": (lambda v: v in LOSSES, f"one of {list(LOSSES)}"),
    "device": (lambda v: v in DEVICES, f"one of {list(DEVICES)}"),
    "validation_fraction": (lambda v: _real(v) and 0 < v < 1, "in (0, 1)"),
    "n_iter_no_change": (lambda v: v is None or (_integer(v) and v >= 1), "a positive integer or None"),
    "tol": (lambda v: _real(v) and v >= 0, "zero or positive"),
    "scale": (lambda v: isinstance(v, (bool, np.bool_)) or v == "auto", "True, False or 'auto'"),
    "contamination": (lambda v: _real(v) and 0 < v <= 0.5, "in (0, 0.5]"),
    "latent_distance": (lambda v: isinstance(v, (bool, np.bool_)), "True, False or 'auto'"),
    "n_refinements": (lambda v: _integer(v) and v >= 1, "a positive integer"),
}

ESTIMATOR_BASE = ModelConfig(body=MLPBody(hidden=(64,)))  # a small default body for tables


# Every estimator's parameters and their defaults, once: the training settings, and every option of every body and
# objective (None: the part's own default), so a new option of a part is a parameter of every estimator by itself.
PARAMETERS = {
    "n_components": 2, "model": "mlp", "body": None, "objective": None, "input_shape": None,
    **{name: None for name in part_options()},
    "loss": "mse", "optimizer": "adam", "precision": "fp32", "max_epochs": 50, "batch_size": 128, "lr": 1e-3,
    "weight_decay": 0.0, "early_stopping": False, "validation_fraction": 0.1, "n_iter_no_change": 10, "tol": 1e-4,
    "scale": True, "device": "auto", "random_state": None, "verbose": 0, "tensorboard": None,
}  # fmt: skip


def parameters(first: tuple[str, ...], **defaults):
    """A class decorator giving an estimator the ``__init__`` scikit-learn wants, from :data:`PARAMETERS` with
    ``defaults`` changed or added: the names in ``first`` positional, the others keyword-only, each only assigned.
    Its signature is a real one (``inspect.signature``), which ``get_params``, ``clone`` and the docs read."""
    values = {**{name: defaults.get(name, PARAMETERS.get(name)) for name in first}, **PARAMETERS, **defaults}
    kind = {name: inspect.Parameter.POSITIONAL_OR_KEYWORD if name in first else inspect.Parameter.KEYWORD_ONLY
            for name in values}  # fmt: skip
    ordered = [*first, *(name for name in values if name not in first)]
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                   *(inspect.Parameter(n, kind[n], default=values[n]) for n in ordered)])  # fmt: skip

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature

    def decorate(cls):
        cls.__init__ = __init__
        return cls

    return decorate


@parameters(("n_components",))
class AutoEncoderBase(BaseEstimator):
    """Parameters and the fitting routine shared by both estimators."""

    CHOSEN = ("n_components", "model", "scale", "max_epochs", "n_iter_no_change")  # may be chosen from the input

    def _choose(self) -> dict:
        """The values of :data:`CHOSEN` this fit uses: the parameters as given (the detector fills in its own)."""
        return {name: getattr(self, name) for name in self.CHOSEN}

    def _p(self, name: str):
        """A parameter as this fit uses it (after :meth:`_choose`)."""
        return self.params_[name] if name in self.CHOSEN else getattr(self, name)

    CHECKED = ("n_components", "max_epochs", "batch_size", "lr", "loss", "device", "validation_fraction",
               "n_iter_no_change", "tol", "scale")  # the parameters :data:`RULES` checks for this estimator

    def _check_params(self) -> None:
        for name in self.CHECKED:
            test, what = RULES[name]
            value = self._p(name)
            if not test(value):
                raise ValueError(f"{name}={value!r} must be {what}")

    def _model_config(self, n_features: int) -> ModelConfig:
        """The model the parameters describe: ``model`` (a shortcut), ``body`` and ``objective`` pick the parts,
        and each part option that is not None is routed to its part (refused if neither part has it)."""
        shape = (n_features,) if self.input_shape is None else tuple(int(d) for d in np.atleast_1d(self.input_shape))
        if math.prod(shape) != n_features:
            raise ValueError(f"input_shape={self.input_shape!r} holds {math.prod(shape)} values per row but X has "
                             f"{n_features} features")  # fmt: skip
        # every option of every body and objective is a parameter of both estimators (None: the part's default)
        options = {name: getattr(self, name) for name in part_options() if getattr(self, name) is not None}
        if "hidden" in options:
            hidden = options["hidden"]
            options["hidden"] = (hidden,) if isinstance(hidden, numbers.Integral) else tuple(hidden)
        output = "sigmoid" if self.loss == "bce" else "linear"
        config = make_config(self._p("model"), body=self.body, objective=self.objective, base=ESTIMATOR_BASE,
                             input_shape=shape, latent_dim=self._p("n_components"), output=output, **options)  # fmt: skip
        if config.overcomplete():
            warnings.warn(f"n_components={self._p('n_components')}: {config.overcomplete()}", UserWarning, stacklevel=3)
        return config

    def _validate(self, X, reset: bool) -> np.ndarray:
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])

    def _shape(self, n_features: int) -> tuple[int, ...]:
        return (n_features,) if self.input_shape is None else tuple(int(d) for d in np.atleast_1d(self.input_shape))

    def _space(self, X: np.ndarray) -> Space:
        """The data's space (:class:`aekit.core.space.Space`): ``scale`` True standardizes, "auto" standardizes unless X
        lies in [0, 1] (pixels), False keeps the values (in [0, 1] or not)."""
        x = X.reshape(len(X), *self._shape(X.shape[1])) if math.prod(self._shape(X.shape[1])) == X.shape[1] else X
        scaling = {True: "standard", False: "none"}.get(self._p("scale"), "auto")
        return Space.fit(x, scaling=scaling).taking_missing(self.ALLOW_NAN)

    def _fit(self, X):
        self.params_ = self._choose()
        self._check_params()
        X = self._validate(X, reset=True)
        config = self._model_config(X.shape[1])
        space = self._space(X)
        space.check_loss(self.loss)
        random_state = check_random_state(self.random_state)
        seed = random_state.randint(2**31 - 1)
        self.train_config_ = TrainConfig(epochs=self._p("max_epochs"), batch_size=self.batch_size, lr=self.lr,
                                         weight_decay=self.weight_decay, optimizer=self.optimizer,
                                         precision=self.precision, loss=self.loss, seed=seed, device=self.device,
                                         n_iter_no_change=self._p("n_iter_no_change"), tol=float(self.tol))  # fmt: skip
        x = space.to_model(X, "X")
        if self.early_stopping:  # monitor the error on held-out rows; else the training loss (as MLPRegressor)
            order = torch.from_numpy(random_state.permutation(len(x)))
            n_validation = max(1, int(round(self.validation_fraction * len(x))))
            data = Data(x[order[n_validation:]], x[order[:n_validation]], space=space)
        else:
            data = Data(x, x[:0], space=space)
        with torch.random.fork_rng(devices=[]):  # leave the caller's global torch RNG as it was
            torch.manual_seed(seed)
            model = build_model(config)
            # TensorBoard's reconstructions and projector show all the fitted rows (an estimator has no test split)
            board = (TensorBoardLog(self.tensorboard, model, Data(x, x, space=space), self.train_config_)
                     if self.tensorboard else None)  # fmt: skip
            history = train(model, data, self.train_config_, progress=self.verbose > 0, on_epoch=board)
            if board is not None:
                board.close()
        self.history_ = [{"epoch": row["epoch"], "train_loss": row["train_loss"],
                          **({"validation_mse": row["test_mse_per_pixel"]} if "test_mse_per_pixel" in row else {}),
                          "seconds": row["seconds"]} for row in history]  # fmt: skip
        self.n_iter_ = len(history)
        self.fitted_ = Fitted(model.cpu().eval(), space)
        self.model_ = self.fitted_.model
        self._fit_rows = X  # a reference (as scikit-learn's nearest-neighbour estimators keep theirs): save() writes them
        if space.scaler is not None and self._p("scale") is not False:
            self.mean_ = space.scaler.mean.reshape(-1).double().numpy()
            self.scale_ = space.scaler.std.reshape(-1).double().numpy()
        return x

    ALLOW_NAN = False  # the imputer's rows have holes (NaN), and its statistics skip them

    def _float64(self, X) -> tuple[torch.Tensor, Fitted]:
        """X in the model's space and a copy of the fitted model, both in float64.

        Errors and codes are computed in float64: float32 products give a row a slightly different result in
        batches of different sizes, and a detector's decisions near its threshold must not depend on which other
        rows came with it (scikit-learn checks this).
        """
        check_is_fitted(self, "fitted_")
        X = self._validate(X, reset=False)
        return self.fitted_.space.to_model(X, "X", dtype=torch.float64), self.fitted_.double()

    def _errors(self, X) -> np.ndarray:
        """Mean squared reconstruction error of each row, in the space the model was trained in."""
        x, fitted = self._float64(X)
        return fitted.parts(x)["reconstruction_error"]

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the fitted estimator as an aekit run directory: its model, its space (scaling), its anomaly score,
        its training history, the rows it was fitted on (``rows.npy``, as the run's data) and their metrics beside
        PCA. ``aekit.load_run``, ``aekit score``, ``serve``, ``export`` and ``report`` read it as any run; a row's
        ``aekit score`` is minus the detector's ``score_samples``. A folder that already holds something is refused
        unless ``overwrite`` (then its run is replaced once the new one is written)."""
        check_is_fitted(self, "fitted_")
        rows = self._fit_rows
        with RunDir(path).saving(overwrite) as rundir:
            space, model = self.fitted_.space, self.fitted_.model
            np.save(rundir / ROWS_FILE, rows.reshape(len(rows), *space.input_shape))
            data = DataConfig(name=ROWS_FILE, test_fraction=0.2 if len(rows) >= 10 else 0.5)
            rundir.write_config({"model": model.config, "data": data, "train": self.train_config_})
            rundir.save_model(model, space.scaler, self.n_iter_)
            rundir.write_history([{"epoch": r["epoch"], "train_loss": r["train_loss"], "seconds": r["seconds"]}
                                  for r in self.history_])  # fmt: skip
            rundir.save_score(self.fitted_.score_spec)
            write_json(rundir / "estimator.json", {"class": type(self).__name__, "params": {
                k: v for k, v in self.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}})
        from ..run.runs import load_run  # (the run layer, above this one's training)

        load_run(path).evaluate()
        return Path(path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


@parameters(("n_components",))
class AutoEncoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, AutoEncoderBase):
    """An autoencoder with PCA's interface: ``fit``, ``transform`` to codes, ``inverse_transform`` back.

    Parameters
    ----------
    n_components : int, default 2
        Size of the code (the number of output features of ``transform``).
    model : str, default "mlp"
        A key of :data:`aekit.SHORTCUTS`: a body and an objective (``"vae"`` is the mlp body with the
        variational objective).
    body, objective : str, optional
        Override the shortcut's parts: a key of :data:`aekit.BODIES` (mlp, conv, linear) and of
        :data:`aekit.OBJECTIVES` (plain, denoising, impute, sparse, vae, vq).
    input_shape : tuple of int, optional
        The shape each row is reshaped to, e.g. ``(1, 28, 28)`` so a conv body sees images. Default: flat rows.
    hidden, activation, channels, noise, noise_level, sparsity, beta, codebook_size, groups, commitment : optional
        Options of the chosen body and objective (see :class:`aekit.MLPBody`, :class:`aekit.ConvBody`,
        :class:`aekit.Denoising`, :class:`aekit.Sparse`, :class:`aekit.Variational`,
        :class:`aekit.VectorQuantized`); None takes the part's default, except ``hidden``, whose default here is
        ``(64,)``. An option given to a model without that part raises ``ValueError``. ``hidden=()`` with the
        mlp body, or ``body="linear"``, gives a linear autoencoder: PCA's subspace.
    loss : {"mse", "bce"}, default "mse"
        Reconstruction loss; "bce" needs X in [0, 1], kept so (``scale`` False or "auto").
    max_epochs : int, default 50
        Passes over the training data.
    batch_size : int, default 128
    optimizer : str, default "adam"
        A key of :data:`aekit.training.optim.OPTIMIZERS` (adam, adamw, sgd).
    precision : {"fp32", "bf16", "auto"}, default "fp32"
        bf16 products for the wide layers where the CPU or GPU has bf16 units (:mod:`aekit.precision`).
    lr : float, default 1e-3
        The optimizer's learning rate.
    weight_decay : float, default 0.0
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the rows and stop when their reconstruction error has not improved by
        ``tol`` for ``n_iter_no_change`` epochs; without it, the same rule watches the training loss (as
        scikit-learn's ``MLPRegressor``).
    validation_fraction : float, default 0.1
    n_iter_no_change : int or None, default 10
        None trains all ``max_epochs``.
    tol : float, default 1e-4
    scale : bool or "auto", default True
        True standardizes each feature (statistics in ``mean_`` and ``scale_``; ``inverse_transform`` undoes it);
        "auto" standardizes unless X lies in [0, 1] (pixels: their near-constant border would blow up); False uses
        X as it is.
    device : {"auto", "cpu", "cuda", "mps"}, default "auto"
    random_state : int, RandomState or None, default None
        Seeds the weights and batch order; an int makes ``fit`` reproducible.
    verbose : int, default 0
        Show a progress bar per epoch when positive.
    tensorboard : str or path, optional
        A folder for TensorBoard logs of the fit (per-epoch scalars, reconstructions of image rows, the codes as a
        projector embedding); needs the ``tensorboard`` extra.

    Attributes
    ----------
    model_ : aekit.AutoEncoder
        The trained network (on the CPU, in eval mode).
    history_ : list of dict
        One row per epoch: ``train_loss`` (the training objective), ``validation_mse`` (mean squared error per
        feature on the held-out rows, with ``early_stopping``) and ``seconds``.
    n_iter_ : int
        Epochs trained.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Standardization statistics (only with ``scale=True``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had column names.
    """

    def fit(self, X, y=None):
        """Train the autoencoder on X; returns self."""
        self._fit(X)
        return self

    @torch.no_grad()
    def transform(self, X):
        """Codes of X, shape (n_samples, n_components)."""
        check_is_fitted(self, "fitted_")
        X = self._validate(X, reset=False)
        return self.fitted_.encode(self.fitted_.space.to_model(X, "X")).numpy().astype(X.dtype)

    @torch.no_grad()
    def inverse_transform(self, X):
        """Decode codes back to the input space, in the original units."""
        check_is_fitted(self, "fitted_")
        z = check_array(X, dtype=[np.float64, np.float32], input_name="X").astype(np.float32)  # NaN/inf refused, as PCA does
        if z.shape[1] != self.n_components:
            raise ValueError(f"expected codes of shape (n_samples, {self.n_components}), got {z.shape}")
        x = self.fitted_.decode(torch.from_numpy(np.ascontiguousarray(z)))  # in the data's units
        return x.reshape(len(z), -1).numpy().astype(np.float64)  # rows, not images

    def score_samples(self, X):
        """Negative mean squared reconstruction error of each row (standardized units): higher is more typical."""
        return -self._errors(X)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over X."""
        return float(self.score_samples(X).mean())

    @property
    def _n_features_out(self):
        return self.n_components


@parameters(("contamination", "n_components"), contamination=0.1, n_components=None, model=None, max_epochs=None,
            n_iter_no_change="auto", scale=None, latent_distance="auto", error_blur=1, code_neighbors=0)
class AutoEncoderOutlierDetector(OutlierMixin, AutoEncoderBase):
    """Anomaly detection by reconstruction error, with PyOD's interface.

    Takes :class:`AutoEncoderTransformer`'s parameters, plus ``contamination``: the expected share of
    outliers in the training data, which sets the threshold.

    Defaults chosen from the input: the parameters left at None (``n_components``, ``model``, ``scale``,
    ``max_epochs``) or "auto" (``n_iter_no_change``, ``latent_distance``) take, for images (an ``input_shape``
    (C, H, W), e.g. 784-column pixel rows with ``input_shape=(1, 28, 28)``), the recipe that measured best on MNIST's
    one-class protocol (``benchmarks/one_class.py``, the README's table): a conv body, a 16-D code, pixels as they
    come, 15 epochs, the latent distance (:data:`IMAGE_RECIPE`); for whole series (an ``input_shape`` (C, L)) the
    sequence recipe (:data:`SEQUENCE_RECIPE`: the tcn body, an 8-D code, 200 epochs; ``benchmarks/series.py``). For
    tables they take :data:`TABLE_DEFAULTS`: a 2-D code, standardized features, up to 50 epochs, and the latent
    distance (on scikit-learn's bundled tables, ``benchmarks/tables_detector.py``: mean ROC-AUC 0.982 with it,
    0.969 without, IsolationForest 0.978). ``params_`` holds what a fit used.

    It follows scikit-learn's outlier-detector contract exactly and also carries PyOD's names:

    ===============================  =============================================  ==========================
    scikit-learn                     meaning                                        PyOD
    ===============================  =============================================  ==========================
    ``score_samples(X)``             minus the reconstruction error: higher is      ``-decision_function(X)``
                                     more normal                                    of PyOD
    ``offset_``                      ``-threshold_``                                ``threshold_`` (error)
    ``decision_function(X)``         ``score_samples(X) - offset_``: negative for   --
                                     outliers
    ``predict(X)``                   1 inlier, -1 outlier                           ``labels_``: 0 / 1 on the
                                                                                    training rows
    --                               training rows' reconstruction errors, higher   ``decision_scores_``
                                     is more abnormal
    ===============================  =============================================  ==========================

    With ``latent_distance=True`` the anomaly score is the reconstruction error plus the squared Mahalanobis
    distance of the row's code to a Gaussian fitted to the training rows' codes, each standardized by its mean and
    standard deviation over the training rows: a row the decoder rebuilds well but whose code lies where no
    training code was (the holes of the latent space) is scored abnormal too. On MNIST's one-class protocol with
    pixels in [0, 1] it lifts the 15-epoch recipe's mean ROC-AUC from 95.9 to 97.0 (8 as the normal digit: 87.2 ->
    91.9); with the paper's GCN preprocessing it did not help (10 epochs: 94.5 -> 94.0). ``error_blur`` (an odd
    window: the residual is averaged over it before squaring; images only) and ``code_neighbors`` (k: the code's
    distance is its mean distance to the k nearest training codes, whitened, instead of the Gaussian's) change
    the two parts; with ``max_epochs=20, error_blur=3, code_neighbors=5`` the mean is 98.0, the best aekit
    measured. All of it is one :class:`aekit.core.fitted.ScoreSpec`, which :meth:`save` stores in a run directory, so that
    ``aekit score``, ``/v1/score``, the report and the exported ``score`` graph compute the same score.
    ``benchmarks/one_class.py`` measures these. "Error" below then means that score.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``; it is minus ``threshold_``.
    threshold_ : float
        Reconstruction errors above it are outliers (the ``1 - contamination`` quantile of training errors).
    decision_scores_ : ndarray of shape (n_samples,)
        Reconstruction errors of the training rows (higher is more abnormal), as PyOD names them.
    labels_ : ndarray of shape (n_samples,)
        1 for training rows above ``threshold_``, else 0 (PyOD's labels).
    code_mean_, code_precision_ : ndarray
        The Gaussian fitted to the training codes (only with ``latent_distance``).
    score_stats_ : ndarray of shape (4,)
        Mean and standard deviation of the training rows' reconstruction errors and code distances (only with
        ``latent_distance``).
    """

    CHOSEN = (*AutoEncoderBase.CHOSEN, "latent_distance")
    IMAGE_RECIPE = {"n_components": 16, "model": "conv", "scale": False, "max_epochs": 15, "n_iter_no_change": None,
                    "latent_distance": True}  # what benchmarks/one_class.py measured best on images  # fmt: skip
    TABLE_DEFAULTS = {"n_components": 2, "model": "mlp", "scale": True, "max_epochs": 50, "n_iter_no_change": 10,
                      "latent_distance": True}  # benchmarks/tables_detector.py: 0.982 against 0.969 without  # fmt: skip
    SEQUENCE_RECIPE = {"n_components": 8, "model": "tcn", "scale": True, "max_epochs": 200,
                       "n_iter_no_change": None, "latent_distance": False}  # benchmarks/series.py (c)  # fmt: skip

    def _choose(self) -> dict:
        """The parameters left to choose (None, or "auto" for n_iter_no_change and latent_distance) take the image
        recipe when ``input_shape`` is an image (C, H, W), the sequence recipe for whole series (C, L), else the
        table defaults."""
        dims = 0 if self.input_shape is None else len(np.atleast_1d(self.input_shape))
        defaults = {3: self.IMAGE_RECIPE, 2: self.SEQUENCE_RECIPE}.get(dims, self.TABLE_DEFAULTS)
        given = {name: getattr(self, name) for name in self.CHOSEN}
        auto = {"n_iter_no_change", "latent_distance"}
        return {name: defaults[name] if (value is None and name not in auto) or (isinstance(value, str) and
                value == "auto" and name in auto) else value for name, value in given.items()}  # fmt: skip

    CHECKED = (*AutoEncoderBase.CHECKED, "contamination", "latent_distance")

    def fit(self, X, y=None):
        """Train on X (mostly inliers), fit the score on it and set ``threshold_``; returns self."""
        self.params_ = self._choose()
        self._check_params()
        X = self._validate(X, reset=True)
        ScoreSpec(self.error_blur, bool(self._p("latent_distance")), self.code_neighbors).check(
            self._shape(X.shape[1]))  # before training  # fmt: skip
        self._fit(X)
        x, fitted = self._float64(X)
        self.decision_scores_ = fitted.fit_score(x, self.error_blur, bool(self._p("latent_distance")),
                                                 self.code_neighbors)  # fmt: skip
        self.fitted_.score_spec = spec = fitted.score_spec
        if spec.latent:  # the Gaussian of the training codes, and the spread of both parts (scikit-learn's names)
            self.code_mean_, self.code_precision_, self.score_stats_ = (spec.code_mean.numpy(), spec.precision.numpy(),
                                                                        spec.stats.numpy())  # fmt: skip
            if spec.neighbors:
                self.neighbor_stats_ = spec.stats[2:].numpy()
        self._set_threshold(self.contamination)
        return self

    def _set_threshold(self, contamination: float) -> None:
        """``threshold_`` (the one rule, :meth:`aekit.core.fitted.Fitted.threshold`), ``offset_`` and ``labels_``."""
        self.threshold_ = self.fitted_.threshold(self.decision_scores_, contamination)
        self.offset_ = -self.threshold_
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)

    @classmethod
    def from_run(cls, path, contamination=0.1) -> "AutoEncoderOutlierDetector":
        """The detector of a run directory's model and stored score, fitted: its ``score_samples`` are minus ``aekit
        score RUN``'s scores (computed here in float64), and its threshold the ``1 - contamination`` quantile of the
        run's training rows' scores. ``fit`` would train a new model."""
        from ..run.runs import load_run

        run = load_run(path)
        config, spec = run.model_config, run.fitted.score_spec
        detector = cls(contamination=contamination, n_components=config.latent_dim, body=config.body.kind,
                       objective=config.objective.kind, input_shape=config.input_shape, scale=run.space.scaler is not None,
                       latent_distance=spec.latent, error_blur=spec.blur, code_neighbors=spec.neighbors)  # fmt: skip
        detector.params_ = detector._choose()
        detector.fitted_ = Fitted(run.model.cpu().eval(), run.space, spec)
        detector.model_, detector.n_features_in_ = detector.fitted_.model, run.space.width
        if run.space.scaler is not None:
            detector.mean_ = run.space.scaler.mean.reshape(-1).double().numpy()
            detector.scale_ = run.space.scaler.std.reshape(-1).double().numpy()
        if spec.latent:
            detector.code_mean_, detector.code_precision_, detector.score_stats_ = (
                spec.code_mean.numpy(), spec.precision.numpy(), spec.stats.numpy())  # fmt: skip
        x_train = run.data().x_train
        detector._fit_rows = run.space.to_data(x_train).reshape(len(x_train), -1).double().numpy()
        detector.decision_scores_ = detector._anomaly_scores(detector._fit_rows)
        detector._set_threshold(contamination)
        detector.history_, detector.n_iter_, detector.train_config_ = run.history(), len(run.history()), run.train_config
        return detector

    def latent_score(self) -> ScoreSpec:
        """The fitted score (:class:`aekit.core.fitted.ScoreSpec`): what :meth:`save` stores in a run directory."""
        check_is_fitted(self, "fitted_")
        return self.fitted_.score_spec

    def _anomaly_scores(self, X) -> np.ndarray:
        """Each row's anomaly score (the fitted model's :meth:`aekit.core.fitted.Fitted.score`, in float64)."""
        x, fitted = self._float64(X)
        return fitted.score(x)

    def feature_errors(self, X):
        """Why each row scores as it does: its squared reconstruction error per feature divided by the number of
        features, shape (n_samples, n_features), in the space the model was trained in (standardized features, or
        pixels; with ``error_blur``, of the blurred residual). A row's values sum to the reconstruction part of its
        score."""
        x, fitted = self._float64(X)
        return fitted.parts(x)["feature_errors"]

    def explain(self, X) -> dict:
        """Each row's anomaly score and its parts: ``score`` (as ``-score_samples``), ``reconstruction_error``,
        ``latent_distance`` (the code's squared Mahalanobis distance, with ``code_neighbors`` its mean distance to
        the nearest training codes, or None without ``latent_distance``) and
        ``feature_errors`` (:meth:`feature_errors`; sums to ``reconstruction_error``), from one pass of the model."""
        x, fitted = self._float64(X)
        parts = fitted.parts(x)
        return {"score": parts["score"], "reconstruction_error": parts["reconstruction_error"],
                "latent_distance": parts.get("latent_distance"), "feature_errors": parts["feature_errors"]}  # fmt: skip

    def score_samples(self, X):
        """Minus the anomaly score of each row (the mean squared reconstruction error, or with ``latent_distance``
        the standardized sum described above): higher is more normal (scikit-learn)."""
        return -self._anomaly_scores(X)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, zero or positive for inliers (scikit-learn)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """1 for inliers, -1 for outliers (reconstruction error above ``threshold_``)."""
        return np.where(self.decision_function(X) < 0, -1, 1)
