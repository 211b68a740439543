"""What the explorer page and the HTTP API compute on top of a loaded run (:class:`Explorer`), apart from the web
framework (:mod:`aekit.faces.serve` serves it): the map of test examples, examples, points, probes, samples and the
run's info, rows in the data's units."""

import numpy as np
import torch

from ..errors import AekitError
from ..model.parts import Variational
from ..run.format import config_to_dict
from ..run.runs import REFINEMENTS, Run
from ..run.training import ANALYSIS_MIN_TEST_ROWS

MAX_ROWS = 4096  # rows per request
MAX_STEPS = 65536  # time steps per request to a series run's /v1/score (each of C values; scored in chunks)
MAX_BODY_BYTES = 64 * 2**20  # a larger request body is refused with 413 before it is parsed
MAP_POINTS = 2000  # test examples on the latent map
NEAREST = 8  # codes averaged to decode a click on the t-SNE map


class Explorer:
    """What the page and the API compute, on top of a loaded run and some of its test examples (no web framework
    in here). :meth:`from_run` loads them; tests build one from a small untrained model and a few rows."""

    def __init__(self, run: Run, x: torch.Tensor, labels: list | None, metrics: dict, test_scores: np.ndarray,
                 tsne: bool = False, seed: int = 0):  # fmt: skip
        self.run, self.model, self.config = run, run.model.eval(), run.model_config
        self.width, self.is_image = run.space.width, run.space.is_image
        self.x, self.labels = x, labels  # (n, *input_shape), model space
        self.codes = run.encode(x).double()  # (n, k)
        self.reconstructions = run.reconstruct(x)  # data space
        from sklearn.decomposition import PCA

        self.pca = PCA(n_components=min(2, *self.codes.shape)).fit(self.codes.numpy())
        self.maps = {"pca": self.pca.transform(self.codes.numpy())}
        if tsne and len(np.unique(self.codes.numpy(), axis=0)) > 5:  # (t-SNE of codes all alike can crash)
            from sklearn.manifold import TSNE

            perplexity = min(30.0, (len(x) - 1) / 3)
            self.maps["tsne"] = TSNE(n_components=2, random_state=seed, init="pca",
                                     perplexity=perplexity).fit_transform(self.codes.numpy())  # fmt: skip
        self.test_scores = np.sort(test_scores)
        self.variational = isinstance(self.config.objective, Variational)
        self.code_mean, self.code_std = self.codes.mean(0), self.codes.std(0).clamp_min(1e-6)
        self.metrics = metrics

    @classmethod
    def from_run(cls, run: Run, map_points: int = MAP_POINTS, tsne: bool = False, seed: int = 0) -> "Explorer":
        """The run's map: ``map_points`` random test examples; the holes measure from metrics.json (or measured)."""
        data = run.data()
        pick = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:map_points]
        metrics = run.metrics()
        if "holes" not in metrics and run.model_config.objective.dense_code and len(data.x_test) >= ANALYSIS_MIN_TEST_ROWS:
            metrics = {**metrics, **run.analysis.holes(data.x_test)}  # (a sparse code, a few rows: none)
        labels = None if data.y_test is None else data.y_test[pick].tolist()
        return cls(run, data.x_test[pick], labels, metrics, run.score(data.x_test).numpy(), tsne=tsne, seed=seed)

    # -- the API, rows in the data's units
    def model_space(self, rows: np.ndarray) -> torch.Tensor:
        """Rows in the data's units, in any layout the run's space takes, into model space (the run's one door)."""
        return self.run.space.to_model(rows, "inputs")

    def encode(self, rows: np.ndarray) -> np.ndarray:
        return self.run.encode(self.model_space(rows)).numpy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.run.decode(torch.as_tensor(codes, dtype=torch.float32)).reshape(len(codes), -1).numpy()

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        return self.run.reconstruct(self.model_space(rows)).reshape(len(rows), -1).numpy()

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Each row's score; a series run's rows are time steps of one series, each scored (``run.series``)."""
        if self.run.data_config.series:
            return self.run.series.score(rows, "inputs")
        return self.run.score(self.model_space(rows)).numpy()

    def impute(self, rows: np.ndarray) -> tuple[np.ndarray, str]:
        """Rows with NaN where missing, filled (observed values as given), and how the model filled them."""
        filled = self.run.impute(rows, "inputs", any_model=True)
        how = ("one pass of a model trained to fill holes (the impute objective)" if self.run.space.missing else
               f"this model was trained without holes: they start at 0 and take its reconstruction "
               f"{REFINEMENTS} times (train with --objective impute to fill better)")  # fmt: skip
        return filled.reshape(len(rows), -1), how

    def inpaint(self, row: np.ndarray) -> dict:
        """One row with erased (NaN) values: it filled in, how, and :meth:`probe` of the filled row."""
        filled, how = self.impute(row[None])
        return {"filled": filled[0].tolist(), "how": how, **self.probe(filled)}

    # -- what the page draws
    def map(self, kind: str) -> dict:
        points = self.maps[kind]
        return {"kind": kind, "x": points[:, 0].tolist(), "y": points[:, 1].tolist() if points.shape[1] > 1 else
                [0.0] * len(points), "labels": self.labels}  # fmt: skip

    def code_at(self, kind: str, x: float, y: float) -> tuple[np.ndarray, str]:
        """The code for a point of a map: exact for PCA (its inverse transform: the mean code plus the two
        components), and for t-SNE, which has no inverse, the average of the 8 nearest codes weighted by
        1 / distance on the map."""
        if kind == "pca":
            point = np.array([[x, y]])[:, : self.pca.n_components_]
            return self.pca.inverse_transform(point)[0], "PCA inverse transform (exact)"
        distance = np.hypot(self.maps[kind][:, 0] - x, self.maps[kind][:, 1] - y)
        nearest = np.argsort(distance)[:NEAREST]
        weights = 1 / (distance[nearest] + 1e-9)
        code = (self.codes.numpy()[nearest] * weights[:, None]).sum(0) / weights.sum()
        return code, f"t-SNE has no inverse: the distance-weighted average of the {NEAREST} nearest codes"

    def input_row(self, index: int) -> list[float]:
        return self.run.space.to_data(self.x[index : index + 1]).reshape(-1).tolist()

    def compressed_bytes(self, x: torch.Tensor) -> list[float] | None:
        """A codec run's bytes for each model-space row coded alone (None for a run that is not a codec)."""
        return self.run.codec.item_bytes(x)[0].tolist() if self.run.model_config.objective.wing == "codec" else None

    def example(self, index: int) -> dict:
        return {"index": index, "label": None if self.labels is None else self.labels[index],
                "input": self.input_row(index), "reconstruction": self.reconstructions[index].reshape(-1).tolist(),
                "code": self.codes[index].tolist(), "bytes": (self.compressed_bytes(self.x[index : index + 1]) or
                                                              [None])[0],
                "score": self.percentile_of(self.run.score(self.x[index : index + 1]).numpy())[0]}  # fmt: skip

    def percentile_of(self, scores: np.ndarray) -> list[dict]:
        share = np.searchsorted(self.test_scores, scores, side="right") / len(self.test_scores)
        return [{"score": float(s), "percentile": float(100 * p)} for s, p in zip(scores, share)]

    def probe(self, rows: np.ndarray, k: int = 5) -> dict:
        """One drawn or uploaded example: its code, reconstruction, score with its percentile among the test
        examples' scores, and the ``k`` map examples whose codes are nearest to its code."""
        code = self.encode(rows)
        distance = torch.cdist(torch.as_tensor(code, dtype=torch.float64), self.codes)[0]
        nearest = distance.argsort()[:k].tolist()
        return {"code": code[0].tolist(), "reconstruction": self.reconstruct(rows)[0].tolist(),
                "bytes": (self.compressed_bytes(self.model_space(rows)) or [None])[0],
                **self.percentile_of(self.score(rows))[0],
                "nearest": [{"index": i, "distance": float(distance[i]), "label": None if self.labels is None else
                             self.labels[i], "input": self.input_row(i)} for i in nearest]}  # fmt: skip

    def samples(self, n: int, seed: int, prior: str | None = None, label: int | None = None) -> dict:
        """Decodings of z ~ N(0, I) beside z from a Gaussian fitted to the codes, and the holes measure; with
        ``prior`` (one the run has, :meth:`aekit.generation.wing.Priors.names`) also ``chosen``: its samples, of ``label``."""
        noise, fitted = self.run.analysis.random_codes(n, seed, self.codes)
        out = {"prior": self.decode(noise.numpy()).tolist(), "fitted": self.decode(fitted.numpy()).tolist(),
               "holes": self.metrics.get("holes")}  # fmt: skip
        if prior is not None:
            x = self.run.priors.sample(n, prior, label, seed)
            out["chosen"] = x.reshape(n, -1).tolist()
            out["chosen_fd"] = self.metrics.get(f"gen_{prior}_fd")
        return out

    def priors(self) -> list[dict]:
        """The run's priors (``normal`` and the fitted ones) and the labels each can be asked for."""
        out = []
        for name in self.run.priors.names():
            try:
                out.append({"name": name, "labels": self.run.priors[name].labels})
            except AekitError as err:  # a prior fitted to an earlier state of the model: listed, with why not
                out.append({"name": name, "labels": [], "error": str(err)})
        return out

    def features(self, n: int = 12, examples: int = 6) -> dict:
        """A sparse autoencoder's ``n`` most frequent features on the map's examples: each one's direction (a flat row
        in the data's units, unit norm), its firing share, and the map examples it is most active on."""
        found = self.run.analysis.features(top=examples)
        chosen = np.argsort(-found["firing"])[:n]
        directions = found["directions"].reshape(len(found["firing"]), -1)
        test = self.run.data().x_test
        return {"features": [{"latent": int(j), "firing": float(found["firing"][j]), "direction": directions[j].tolist(),
                              "top": [self.run.space.to_data(test[i : i + 1]).reshape(-1).tolist()
                                      for i in found["top"][j] if i >= 0]} for j in chosen]}  # fmt: skip

    def feature_names(self) -> list[str] | None:
        """A table's feature names (a categorical column's slots as ``name=category``), else None."""
        if not self.config.columns:
            return None
        return [c.name if c.kind == "numeric" else f"{c.name}={k}" for c in self.config.columns
                for k in (c.categories or [None])]  # fmt: skip

    def info(self) -> dict:
        return {"run": self.run.path.name, "model": self.config.name, "config": config_to_dict(self.run.model_config),
                "is_codec": self.run.model_config.objective.wing == "codec", "is_sparse": self.config.objective.kind == "topk",
                "feature_names": self.feature_names(),
                "input_shape": list(self.config.input_shape), "latent_dim": self.config.latent_dim,
                "is_image": self.is_image, "variational": self.variational, "metrics": self.metrics,
                "maps": sorted(self.maps), "code_mean": self.code_mean.tolist(), "code_std": self.code_std.tolist(),
                "limits": {"max_rows": MAX_ROWS, "max_body_bytes": MAX_BODY_BYTES,
                           **({"max_steps": MAX_STEPS} if self.run.data_config.series else {})},
                "priors": self.priors()}  # fmt: skip
