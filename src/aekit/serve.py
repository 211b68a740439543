"""``aekit serve``: explore a trained model's latent space in the browser, and serve the model over HTTP.

One FastAPI app per run directory. The JSON API (OpenAPI page at ``/docs``)::

    POST /v1/encode       {"inputs": [[...], ...]}  -> {"codes": [[...], ...]}
    POST /v1/decode       {"codes": [[...], ...]}   -> {"outputs": [[...], ...]}
    POST /v1/reconstruct  {"inputs": [[...], ...]}  -> {"outputs": [[...], ...]}
    POST /v1/score        {"inputs": [[...], ...]}  -> {"scores": [...]}
    GET  /v1/info                                    -> the run's config and metrics
    GET  /healthz                                    -> {"status": "ok"}

Rows are flat, in the data's own units (pixels in [0, 1] for images; a table's raw values, standardized
inside as in training), and outputs come back in the same units. A score is the row's mean squared
reconstruction error in the units the model was trained in, as ``aekit score`` writes it. A request body may
also be a ``.npy`` array (``Content-Type: application/x-npy``), which skips JSON for large batches.

pydantic checks every body (numbers only, finite, 1 to ``MAX_ROWS`` rows); the handlers check the row width.
Each bad request gets a 4xx with a message naming the problem. Only the run's own files are read, once, at
start: no path from a request reaches the file system. The explorer page (``static/explorer.html``, plain HTML
and JavaScript, nothing from a network) draws what ``/v1/explore/*`` returns.
"""

import io  # no `from __future__ import annotations`: FastAPI reads the handlers' annotations, some of them local
import logging
import math
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from . import evaluate, plots
from .checkpoint import RunDir, config_to_dict
from .errors import AekitError
from .models import Variational
from .runs import Run, load_run
from .train import squared_errors

log = logging.getLogger(__name__)

MAX_ROWS = 4096  # rows per request
MAX_BODY_BYTES = 64 * 2**20  # a larger request body is refused with 413 before it is parsed
MAP_POINTS = 2000  # test examples on the latent map


class Explorer:
    """What the page and the API compute, on top of a loaded run (no web framework in here)."""

    def __init__(self, run: "Run", map_points: int = MAP_POINTS, tsne: bool = False, seed: int = 0):
        self.run, self.model = run, run.model.eval()
        self.config = run.model_config
        self.width = math.prod(self.config.input_shape)
        self.is_image = plots.is_image_data(self.config.input_shape)
        data = run.data()
        pick = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:map_points]
        self.x = data.x_test[pick]  # (n, *input_shape), model space
        self.labels = None if data.y_test is None else data.y_test[pick].tolist()
        self.codes = evaluate.encode(self.model, self.x).double()  # (n, k)
        self.reconstructions = evaluate.reconstruct(self.model, self.x)
        from sklearn.decomposition import PCA

        self.pca = PCA(n_components=min(2, self.codes.shape[1])).fit(self.codes.numpy())
        self.maps = {"pca": self.pca.transform(self.codes.numpy())}
        if tsne:
            from sklearn.manifold import TSNE

            self.maps["tsne"] = TSNE(n_components=2, random_state=seed, init="pca").fit_transform(self.codes.numpy())
        test_scores = squared_errors(self.model, data.x_test) / self.width
        self.test_scores = np.sort(test_scores.numpy())
        self.variational = isinstance(self.config.objective, Variational)
        self.code_mean, self.code_std = self.codes.mean(0), self.codes.std(0).clamp_min(1e-6)
        metrics = RunDir(run.path).read_metrics()
        self.holes = metrics.get("holes")
        if self.holes is None:
            self.holes = evaluate.holes(self.model, data.x_test)["holes"]
        self.metrics = metrics

    # -- the API, rows in the data's units
    def model_space(self, rows: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).reshape(len(rows), *self.config.input_shape)
        return x if self.run.scaler is None else self.run.scaler.transform(x)

    def data_space(self, x: torch.Tensor) -> np.ndarray:
        return self.run.to_data_space(x).reshape(len(x), -1).numpy()

    @torch.no_grad()
    def encode(self, rows: np.ndarray) -> np.ndarray:
        return self.model.encode(self.model_space(rows)).numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.data_space(self.model.decode(torch.as_tensor(codes, dtype=torch.float32)))

    @torch.no_grad()
    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        return self.data_space(self.model(self.model_space(rows)))

    def score(self, rows: np.ndarray) -> np.ndarray:
        return (squared_errors(self.model, self.model_space(rows)) / self.width).numpy()

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
        nearest = np.argsort(distance)[:8]
        weights = 1 / (distance[nearest] + 1e-9)
        code = (self.codes.numpy()[nearest] * weights[:, None]).sum(0) / weights.sum()
        return code, "t-SNE has no inverse: the distance-weighted average of the 8 nearest codes"

    def example(self, index: int) -> dict:
        return {"index": index, "label": None if self.labels is None else self.labels[index],
                "input": self.data_space(self.x[index : index + 1])[0].tolist(),
                "reconstruction": self.data_space(self.reconstructions[index : index + 1])[0].tolist(),
                "code": self.codes[index].tolist(),
                "score": self.percentile_of((squared_errors(self.model, self.x[index : index + 1]) / self.width).numpy())[0]}  # fmt: skip

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
                **self.percentile_of(self.score(rows))[0],
                "nearest": [{"index": i, "distance": float(distance[i]), "label": None if self.labels is None else
                             self.labels[i], "input": self.data_space(self.x[i : i + 1])[0].tolist()}
                            for i in nearest]}  # fmt: skip

    def samples(self, n: int, seed: int) -> dict:
        """Decodings of z ~ N(0, I) beside z from a Gaussian fitted to the codes, and the holes measure."""
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(n, self.codes.shape[1], generator=generator, dtype=torch.float64)
        fitted = evaluate.gaussian_like(self.codes, noise)
        return {"prior": self.decode(noise.numpy()).tolist(), "fitted": self.decode(fitted.numpy()).tolist(),
                "holes": self.holes}  # fmt: skip

    def info(self) -> dict:
        return {"run": self.run.path.name, "model": self.config.name, "config": config_to_dict(self.config),
                "input_shape": list(self.config.input_shape), "latent_dim": self.config.latent_dim,
                "is_image": self.is_image, "variational": self.variational, "metrics": self.metrics,
                "maps": sorted(self.maps), "code_mean": self.code_mean.tolist(), "code_std": self.code_std.tolist(),
                "limits": {"max_rows": MAX_ROWS, "max_body_bytes": MAX_BODY_BYTES}}  # fmt: skip


def problems(errors: list[dict], skip: int = 0) -> str:
    """pydantic's errors as one line: ``inputs.0.3: Input should be a finite number; ...`` (the first five)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'body'}: {e['msg']}" for e in errors[:5])


def create_app(run_path: str | Path, device: str = "cpu", map_points: int = MAP_POINTS, tsne: bool = False):
    """The FastAPI app serving one run directory (loaded once, here)."""
    try:
        from fastapi import FastAPI, HTTPException, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse
        from pydantic import BaseModel, Field, ValidationError
    except ImportError:
        raise AekitError("aekit serve needs the 'serve' extra: pip install 'aekit[serve]'") from None

    explorer = Explorer(load_run(run_path, device), map_points=map_points, tsne=tsne)
    width, latent = explorer.width, explorer.config.latent_dim
    Number = Annotated[float, Field(allow_inf_nan=False)]
    Rows = Annotated[list[list[Number]], Field(min_length=1, max_length=MAX_ROWS)]

    class Inputs(BaseModel):
        inputs: Rows

    class Codes(BaseModel):
        codes: Rows

    class Point(BaseModel):
        map: str = "pca"
        x: Number
        y: Number

    app = FastAPI(title="aekit", description=f"The autoencoder in {run_path}: encode, decode, reconstruct, score.")

    class BodyLimit:
        """Refuse a declared body over ``MAX_BODY_BYTES`` before it is read (a plain ASGI middleware: starlette's
        BaseHTTPMiddleware would cost about a millisecond on every request)."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                size = dict(scope["headers"]).get(b"content-length", b"0")
                if size.isdigit() and int(size) > MAX_BODY_BYTES:
                    detail = f"request body of {int(size)} bytes is over the {MAX_BODY_BYTES} allowed"
                    return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            await self.inner(scope, receive, send)

    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def one_message(request: Request, err: RequestValidationError):
        return JSONResponse({"detail": problems(err.errors(), skip=1)}, status_code=422)  # loc[0] is "body"

    async def rows_of(request: Request, field: str, model) -> np.ndarray:
        """A request's rows: a .npy body, or JSON checked by pydantic."""
        if request.headers.get("content-type", "").startswith("application/x-npy"):
            body = await request.body()
            try:
                array = np.load(io.BytesIO(body), allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise HTTPException(422, f"body: not a .npy array ({err})") from None
            if array.dtype.kind not in "biuf" or array.ndim != 2 or not 1 <= len(array) <= MAX_ROWS:
                raise HTTPException(422, f"body: need a numeric (rows, features) array of 1 to {MAX_ROWS} rows, got "
                                         f"{array.dtype} {array.shape}")  # fmt: skip
            if not np.isfinite(array).all():
                raise HTTPException(422, "body: holds NaN or infinite values")
        else:
            try:
                parsed = model.model_validate_json(await request.body())
            except ValidationError as err:
                raise HTTPException(422, problems(err.errors())) from None
            rows = getattr(parsed, field)
            widths = sorted({len(row) for row in rows})
            if len(widths) > 1:
                raise HTTPException(422, f"{field}: rows of different lengths ({widths[0]} to {widths[-1]} values)")
            array = np.asarray(rows, dtype=np.float64)
        expected = latent if field == "codes" else width
        if array.shape[1] != expected:
            what = "code size" if field == "codes" else "width"
            raise HTTPException(422, f"{field}: each row must have {expected} values (the model's {what}); got "
                                     f"{array.shape[1]}")  # fmt: skip
        if field == "inputs" and array.dtype.itemsize > 4 and np.abs(array).max() > np.finfo(np.float32).max:
            raise HTTPException(422, "inputs: values beyond float32's range")
        return array

    body_doc = {"requestBody": {"content": {"application/json": {"schema": Inputs.model_json_schema()}}}}
    codes_doc = {"requestBody": {"content": {"application/json": {"schema": Codes.model_json_schema()}}}}

    @app.post("/v1/encode", openapi_extra=body_doc)
    async def encode(request: Request) -> dict:
        return {"codes": explorer.encode(await rows_of(request, "inputs", Inputs)).tolist()}

    @app.post("/v1/decode", openapi_extra=codes_doc)
    async def decode(request: Request) -> dict:
        return {"outputs": explorer.decode(await rows_of(request, "codes", Codes)).tolist()}

    @app.post("/v1/reconstruct", openapi_extra=body_doc)
    async def reconstruct(request: Request) -> dict:
        return {"outputs": explorer.reconstruct(await rows_of(request, "inputs", Inputs)).tolist()}

    @app.post("/v1/score", openapi_extra=body_doc)
    async def score(request: Request) -> dict:
        return {"scores": explorer.score(await rows_of(request, "inputs", Inputs)).tolist()}

    @app.get("/v1/info")
    def info() -> dict:
        return explorer.info()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/explore/map/{kind}")
    def latent_map(kind: str) -> dict:
        if kind not in explorer.maps:
            raise HTTPException(404, f"no {kind!r} map; this server has {sorted(explorer.maps)}")
        return explorer.map(kind)

    @app.get("/v1/explore/example/{index}")
    def example(index: int) -> dict:
        if not 0 <= index < len(explorer.x):
            raise HTTPException(404, f"example {index} is not on the map (0 to {len(explorer.x) - 1})")
        return explorer.example(index)

    @app.post("/v1/explore/point")
    def point(body: Point) -> dict:
        if body.map not in explorer.maps:
            raise HTTPException(404, f"no {body.map!r} map; this server has {sorted(explorer.maps)}")
        code, how = explorer.code_at(body.map, body.x, body.y)
        return {"code": code.tolist(), "output": explorer.decode(code[None])[0].tolist(), "how": how}

    @app.post("/v1/explore/probe", openapi_extra=body_doc)
    async def probe(request: Request) -> dict:
        rows = await rows_of(request, "inputs", Inputs)
        return explorer.probe(rows[:1])

    @app.get("/v1/explore/samples")
    def samples(n: Annotated[int, Query(ge=1, le=256)] = 16, seed: int = 0) -> dict:
        return explorer.samples(n, seed)

    page = resources.files("aekit").joinpath("static/explorer.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def explorer_page() -> str:
        return page

    return app


def serve(run_path: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu", tsne: bool = False):
    """Start the app with uvicorn and block until stopped (Ctrl-C)."""
    app = create_app(run_path, device=device, tsne=tsne)
    import uvicorn

    print(f"aekit serve: {run_path} at http://{host}:{port}/ (API: http://{host}:{port}/docs); Ctrl-C stops",
          flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")
