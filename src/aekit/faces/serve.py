"""``aekit serve``: explore a trained model's latent space in the browser, and serve the model over HTTP.

One FastAPI app per run directory; the routes are module-level, on :data:`router`. The JSON API (OpenAPI page
at ``/docs``, generated from the pydantic models below)::

    POST /v1/encode       {"inputs": [[...], ...]}  -> {"codes": [[...], ...]}
    POST /v1/decode       {"codes": [[...], ...]}   -> {"outputs": [[...], ...]}
    POST /v1/reconstruct  {"inputs": [[...], ...]}  -> {"outputs": [[...], ...]}
    POST /v1/score        {"inputs": [[...], ...]}  -> {"scores": [...]}   (a series run: rows are time steps)
    POST /v1/explain      {"inputs": [[...], ...]}  -> {"scores": [...], "feature_errors": [[...], ...]}
    POST /v1/impute       {"inputs": [[1, null, ...], ...]}  -> {"outputs": [[...], ...]}: null is missing, filled
    GET  /v1/info                                    -> the run's config and metrics
    GET  /healthz                                    -> {"status": "ok"}
    GET  /docs, /redoc                               -> the OpenAPI pages, from local assets (they work offline)

Rows are flat or, for an image run, images ((C, H, W) or (H, W) each), in the data's own units (pixels in [0, 1] for images; a table's raw values, standardized
inside as in training), and outputs come back in the same units. A score is the row's mean squared
reconstruction error in the units the model was trained in, as ``aekit score`` writes it (``Run.score``). A
request body may also be a ``.npy`` array (``Content-Type: application/x-npy``), which skips JSON for large
batches. A table run (CSV or Parquet, named columns) also takes its rows in the table's own columns, as ``aekit
score`` reads a file: records ``{"column": value, ...}`` (other keys, such as the label, left out) or lists of one
value per column, strings and numbers, null where missing; ``/v1/impute`` then answers in those columns too.

The loaded run reaches every handler through one dependency, :func:`get_explorer` (tests override it with a
small untrained model); the rows reach them through :func:`input_rows` / :func:`code_rows`, which accept JSON
(checked by pydantic: numbers only, finite, 1 to ``MAX_ROWS`` rows, or a series run's ``MAX_STEPS`` time steps) or a
``.npy`` body and check the row width.
Those two read the raw body, as FastAPI's guide does for a second content type, so each route's request body
in the OpenAPI document is :func:`rows_body` of its pydantic model. Each bad request gets a 4xx with a message
naming the problem. Only the run's own files are read, once, at start: no path from a request reaches the file
system. The explorer page (``static/explorer.html``, plain HTML and JavaScript, nothing from a network) draws
what ``/v1/explore/*`` returns.
"""

import importlib  # no `from __future__ import annotations`: FastAPI reads the handlers' annotations
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from .._version import __version__
from ..errors import AekitError, DataError
from ..run.outputs import array_from_npy
from ..run.runs import load_run
from .explorer import MAP_POINTS, MAX_BODY_BYTES, MAX_ROWS, MAX_STEPS, Explorer

try:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi_offline import FastAPIOffline
    from pydantic import BaseModel, Field, ValidationError
except ImportError:  # the 'serve' extra is missing: the CLI says so in one line before it imports this module
    raise AekitError("aekit serve needs the 'serve' extra: pip install 'aekit[serve]'") from None


# ------------------------------------------------------------------------------------------ request and response bodies
Number = Annotated[float, Field(allow_inf_nan=False, strict=True)]  # numbers only: "0.5" as a string is refused
Row = list[Number] | list[list[Number]] | list[list[list[Number]]]  # flat, or an image (H, W) or (C, H, W)
Rows = Annotated[list[list[Number]], Field(min_length=1, max_length=MAX_ROWS)]


class Inputs(BaseModel):
    """Rows in the data's units: flat, or for an image run ``(C, H, W)`` or (one channel) ``(H, W)`` each."""

    inputs: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


class Steps(BaseModel):
    """A long series for a series run's score: one row of C values per time step."""

    inputs: Annotated[list[list[Number]], Field(min_length=1, max_length=MAX_STEPS)]


class Codes(BaseModel):
    codes: Rows


class WithHoles(BaseModel):
    """Rows with missing values: null where a value is missing (JSON has no NaN)."""

    inputs: Annotated[list[list[Number | None]], Field(min_length=1, max_length=MAX_ROWS)]


class Point(BaseModel):
    map: str = "pca"
    x: Number
    y: Number


class CodesOut(BaseModel):
    codes: list[list[float]]


class Outputs(BaseModel):
    outputs: list[list[float | str | None]]


class Scores(BaseModel):
    scores: list[float]


class Decoded(BaseModel):
    code: list[float]
    output: list[float]
    how: str


def rows_body(model: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route whose rows come as ``model`` in JSON or as a ``.npy`` array."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}}}  # fmt: skip


def problems(errors: list[dict], skip: int = 0) -> str:
    """pydantic's errors as one line: ``inputs.0.3: Input should be a finite number; ...`` (the first five).

    A row of :data:`Row` is one of three layouts (a union): pydantic reports why it failed as each. The layout the
    row most looks like is kept (the fewest "not a list" errors, then the deepest), and the layout's name is left
    out of the location."""
    branches: dict[str, list[dict]] = {}
    for e in errors:
        loc = e["loc"]
        tagged = len(loc) > 2 and isinstance(loc[1], int) and isinstance(loc[2], str)  # (field, row, layout, ...)
        branches.setdefault(loc[2] if tagged else "", []).append({**e, "loc": loc[:2] + loc[3:] if tagged else loc})
    chosen = min(branches.values(), key=lambda es: (sum(e["type"] == "list_type" for e in es),
                                                     -max(len(e["loc"]) for e in es)))  # fmt: skip
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'body'}: {e['msg']}" for e in chosen[:5])


# ------------------------------------------------------------------------------------------ dependencies
def get_explorer(request: Request) -> Explorer:
    """The app's loaded run (tests override this dependency with a small fake)."""
    return request.app.state.explorer


ExplorerDep = Annotated[Explorer, Depends(get_explorer)]


async def _rows(request: Request, field: str, model: type[BaseModel], layouts: list[tuple[int, ...]],
                parsed=None, most: int = MAX_ROWS) -> np.ndarray:  # fmt: skip
    """A request's rows: a .npy body, or JSON checked by pydantic (``parsed``: the body already read as JSON); each
    row in one of ``layouts`` (flat first)."""
    if request.headers.get("content-type", "").startswith("application/x-npy"):
        try:
            array = array_from_npy(await request.body())  # its header checked against the payload first
        except DataError as err:
            raise HTTPException(422, f"body: not a .npy array ({err})") from None
        if array.dtype.kind not in "biuf" or array.ndim < 2 or not 1 <= len(array) <= most:
            raise HTTPException(422, f"body: need a numeric (rows, ...) array of 1 to {most} rows, got "
                                     f"{array.dtype} {array.shape}")  # fmt: skip
        if not np.isfinite(array).all():
            raise HTTPException(422, "body: holds NaN or infinite values")
    else:
        try:
            body = model.model_validate_json(await request.body()) if parsed is None else model.model_validate(parsed)
            rows = getattr(body, field)
        except ValidationError as err:
            raise HTTPException(422, problems(err.errors())) from None
        try:
            array = np.asarray(rows, dtype=np.float64)
        except ValueError:
            raise HTTPException(422, f"{field}: rows of different shapes") from None
    if tuple(array.shape[1:]) not in layouts:
        what, flat = ("code size" if field == "codes" else "width"), layouts[0][0]
        shaped = "".join(f" or {list(shape)}" for shape in layouts[1:])
        got = array.shape[1] if array.ndim == 2 else list(array.shape[1:])
        raise HTTPException(422, f"{field}: each row must have {flat} values{shaped and ' or be shaped'}{shaped[3:]} "
                                 f"(the model's {what}); got {got}")  # fmt: skip
    if field == "inputs" and array.dtype.itemsize > 4 and np.abs(array).max() > np.finfo(np.float32).max:
        raise HTTPException(422, "inputs: values beyond float32's range")
    return array


async def own_columns(request: Request, explorer: Explorer) -> tuple[np.ndarray | None, object]:
    """A table run's ``{"inputs": [...]}`` in the table's own columns (records or lists of its values, strings and
    numbers, null where missing; :meth:`aekit.core.space.Space.table_rows`) as encoded rows, and the JSON body as
    read (None when not read: not a table run, a .npy body, not JSON); the rows None for any other body."""
    if not explorer.run.model_config.columns or request.headers.get("content-type", "").startswith("application/x-npy"):
        return None, None
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None, None  # pydantic reads it again, to say where it is not JSON
    rows = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        return None, body
    try:
        return explorer.run.space.table_rows(rows, "inputs"), body
    except DataError as err:
        raise HTTPException(422, str(err)) from None


async def input_rows(request: Request, explorer: ExplorerDep) -> np.ndarray:
    """The rows of an ``{"inputs": ...}`` (or .npy) body, as wide as the model's input; a table run's also in the
    table's own columns. Missing cells there are refused unless the model takes them (impute takes them)."""
    table, body = await own_columns(request, explorer)
    if table is not None:
        if np.isnan(table).any() and not explorer.run.space.missing:
            raise HTTPException(422, "inputs: a cell is missing and this model was trained without missing cells; "
                                     "fill it, or use /v1/impute")  # fmt: skip
        return table
    return await _rows(request, "inputs", Inputs, sorted(explorer.run.space.layouts(), key=len), body)


async def scored_rows(request: Request, explorer: ExplorerDep) -> np.ndarray:
    """The rows to score: the model's inputs, or for a series run the time steps of a series (C values each)."""
    if explorer.run.data_config.series:
        return await _rows(request, "inputs", Steps, [explorer.run.space.input_shape[:1]], most=MAX_STEPS)
    return await input_rows(request, explorer)


async def code_rows(request: Request, explorer: ExplorerDep) -> np.ndarray:
    """The rows of a ``{"codes": ...}`` (or .npy) body, as wide as the model's code."""
    return await _rows(request, "codes", Codes, [(explorer.config.latent_dim,)])


InputRows = Annotated[np.ndarray, Depends(input_rows)]
ScoredRows = Annotated[np.ndarray, Depends(scored_rows)]
CodeRows = Annotated[np.ndarray, Depends(code_rows)]

# ------------------------------------------------------------------------------------------ routes
router = APIRouter()


@router.post("/v1/encode", openapi_extra=rows_body(Inputs))
def encode(rows: InputRows, explorer: ExplorerDep) -> CodesOut:
    return CodesOut(codes=explorer.encode(rows).tolist())


@router.post("/v1/decode", openapi_extra=rows_body(Codes))
def decode(rows: CodeRows, explorer: ExplorerDep) -> Outputs:
    return Outputs(outputs=explorer.decode(rows).tolist())


@router.post("/v1/reconstruct", openapi_extra=rows_body(Inputs))
def reconstruct(rows: InputRows, explorer: ExplorerDep) -> Outputs:
    return Outputs(outputs=explorer.reconstruct(rows).tolist())


@router.post("/v1/score", openapi_extra=rows_body(Inputs))
def score(rows: ScoredRows, explorer: ExplorerDep) -> Scores:
    return Scores(scores=explorer.score(rows).tolist())


class Explained(BaseModel):
    scores: list[float]
    feature_errors: list[list[float]]


@router.post("/v1/explain", openapi_extra=rows_body(Inputs))
def explain(rows: InputRows, explorer: ExplorerDep) -> Explained:
    """Each row's score and its error per feature (squared error / number of features; they sum to the score)."""
    parts = explorer.run.fitted.parts(explorer.model_space(rows))
    return Explained(scores=parts["score"].tolist(), feature_errors=parts["feature_errors"].tolist())


def holey_rows(body: WithHoles, explorer: Explorer) -> np.ndarray:
    widths = sorted({len(row) for row in body.inputs})
    if widths != [explorer.width]:
        raise HTTPException(422, f"inputs: each row must have {explorer.width} values (the model's width); got "
                                 f"{widths[0]}" + (f" to {widths[-1]}" if len(widths) > 1 else ""))  # fmt: skip
    return np.array([[np.nan if v is None else v for v in row] for row in body.inputs], dtype=np.float64)


@router.post("/v1/impute", openapi_extra=rows_body(WithHoles))
async def impute(request: Request, explorer: ExplorerDep) -> Outputs:
    """Rows with null where a value is missing, filled; every given value comes back as it was. A table run takes
    and gives its rows in its own columns too (each filled category the likeliest)."""
    table, parsed = await own_columns(request, explorer)
    try:
        if table is not None:
            return Outputs(outputs=explorer.run.space.table_values(explorer.impute(table)[0]))
        try:
            body = (WithHoles.model_validate_json(await request.body()) if parsed is None else
                    WithHoles.model_validate(parsed))  # fmt: skip
        except ValidationError as err:
            raise HTTPException(422, problems(err.errors())) from None
        return Outputs(outputs=explorer.impute(holey_rows(body, explorer))[0].tolist())
    except DataError as err:
        raise HTTPException(422, str(err)) from None


@router.post("/v1/explore/inpaint")
def inpaint(body: WithHoles, explorer: ExplorerDep) -> dict[str, Any]:
    """The explorer's eraser: one row with null where it was rubbed out, filled, beside its nearest map examples."""
    return explorer.inpaint(holey_rows(body, explorer)[0])


@router.get("/v1/info")
def info(explorer: ExplorerDep) -> dict[str, Any]:
    return explorer.info()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _known_map(explorer: Explorer, kind: str) -> None:
    if kind not in explorer.maps:
        raise HTTPException(404, f"no {kind!r} map; this server has {sorted(explorer.maps)}")


@router.get("/v1/explore/map/{kind}")
def latent_map(kind: str, explorer: ExplorerDep) -> dict[str, Any]:
    _known_map(explorer, kind)
    return explorer.map(kind)


@router.get("/v1/explore/example/{index}")
def example(index: int, explorer: ExplorerDep) -> dict[str, Any]:
    if not 0 <= index < len(explorer.x):
        raise HTTPException(404, f"example {index} is not on the map (0 to {len(explorer.x) - 1})")
    return explorer.example(index)


@router.post("/v1/explore/point")
def point(body: Point, explorer: ExplorerDep) -> Decoded:
    _known_map(explorer, body.map)
    code, how = explorer.code_at(body.map, body.x, body.y)
    return Decoded(code=code.tolist(), output=explorer.decode(code[None])[0].tolist(), how=how)


@router.get("/v1/explore/features")
def features(explorer: ExplorerDep) -> dict[str, Any]:
    """A sparse autoencoder's most frequent features, with the examples each is most active on."""
    try:
        return explorer.features()
    except AekitError as err:  # not a sparse autoencoder
        raise HTTPException(404, str(err)) from None


@router.post("/v1/explore/probe", openapi_extra=rows_body(Inputs))
def probe(rows: InputRows, explorer: ExplorerDep) -> dict[str, Any]:
    return explorer.probe(rows[:1])


@router.get("/v1/explore/samples")
def samples(explorer: ExplorerDep, n: Annotated[int, Query(ge=1, le=256)] = 16,
            seed: Annotated[int, Query(ge=0, lt=2**63)] = 0, prior: str | None = None,
            label: int | None = None) -> dict[str, Any]:  # fmt: skip
    try:
        return explorer.samples(n, seed, prior, label)
    except AekitError as err:  # an unknown or unfitted prior, a label it does not know
        raise HTTPException(422, str(err)) from None


PAGE = resources.files(__package__).joinpath("static/explorer.html")


@router.get("/", response_class=HTMLResponse)
def explorer_page() -> str:
    return PAGE.read_text()


# ------------------------------------------------------------------------------------------ the app
class BodyLimit:
    """Hold a request body to ``MAX_BODY_BYTES``, however it is sent (a plain ASGI middleware: starlette's
    BaseHTTPMiddleware would cost about a millisecond on every request).

    A declared ``Content-Length`` over the limit is refused before anything is read. A body sent without one
    (``Transfer-Encoding: chunked``) is read here, message by message, and refused as soon as it passes the limit,
    so the server never holds more than the limit of it; a body within the limit is handed on as one message."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and size.isdigit():  # declared: the server reads at most that much
            if int(size) > MAX_BODY_BYTES:
                return await too_large(f"request body of {int(size)} bytes", scope, receive, send)
            return await self.inner(scope, receive, send)
        parts, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            parts.append(message.get("body", b""))
            total, more = total + len(parts[-1]), message.get("more_body", False)
            if total > MAX_BODY_BYTES:
                return await too_large("a request body sent in chunks", scope, receive, send)
        body, sent = b"".join(parts), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # http.disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.inner(scope, replay, send)


async def too_large(what: str, scope, receive, send):
    detail = f"{what} is over the {MAX_BODY_BYTES} bytes allowed"
    await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


async def one_message(request: Request, err: RequestValidationError):
    return JSONResponse({"detail": problems(err.errors(), skip=1)}, status_code=422)  # loc[0] is "body" or "query"


def redoc_page(request: Request) -> HTMLResponse:
    """ReDoc from the packaged script; a content-security policy keeps it to this server (its footer's logo would
    come from redocly's CDN)."""
    from fastapi.openapi.docs import get_redoc_html

    page = get_redoc_html(openapi_url=request.app.openapi_url, title=request.app.title + " - ReDoc",
                          redoc_js_url="/static-offline-docs/redoc.standalone.js", with_google_fonts=False,
                          redoc_favicon_url="/static-offline-docs/favicon.png").body.decode()  # fmt: skip
    policy = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self' 'unsafe-inline' blob: data:; "
              "img-src 'self' data: blob:\">")  # fmt: skip
    return HTMLResponse(page.replace("<head>", "<head>" + policy, 1))


def make_app(explorer: Explorer | None, title: str = "aekit") -> FastAPI:
    """The app around :data:`router`, serving ``explorer`` (None: a test overrides :func:`get_explorer`)."""
    # /docs and /redoc from assets in the package (fastapi-offline ships Swagger UI and ReDoc): no CDN, so they work
    # offline; the Swagger validator badge (a request to validator.swagger.io) is off
    app = FastAPIOffline(title=title, description="An autoencoder: encode, decode, reconstruct, score, explore.",
                         version=__version__, swagger_ui_parameters={"validatorUrl": None}, redoc_url=None)  # fmt: skip
    app.add_api_route("/redoc", redoc_page, include_in_schema=False)
    app.state.explorer = explorer
    app.add_middleware(BodyLimit)
    app.add_exception_handler(RequestValidationError, one_message)
    app.include_router(router)
    return app


def create_app(run_path: str | Path, device: str = "cpu", map_points: int = MAP_POINTS, tsne: bool = False):
    """The FastAPI app serving one run directory (loaded once, here)."""
    try:
        importlib.import_module("fastapi")
    except ImportError:
        raise AekitError("aekit serve needs the 'serve' extra: pip install 'aekit[serve]'") from None
    explorer = Explorer.from_run(load_run(run_path, device), map_points=map_points, tsne=tsne)
    return make_app(explorer, title=f"aekit: {Path(run_path).name}")


def serve(run_path: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu", tsne: bool = False):
    """Start the app with uvicorn and block until stopped (Ctrl-C)."""
    app = create_app(run_path, device=device, tsne=tsne)
    import uvicorn

    print(f"aekit serve: {run_path} at http://{host}:{port}/ (API: http://{host}:{port}/docs); Ctrl-C stops",
          flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")
