"""aekit serve: the API against the in-process model (FastAPI's test client and a real socket), bad requests,
and the explorer page driven in a real headless Chromium."""

import contextlib
import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.configs import TrainConfig
from aekit.core.fitted import encode, reconstruct
from aekit.training.loop import squared_errors

fastapi = pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from aekit.faces.serve import MAX_ROWS, create_app  # noqa: E402

ARTIFACTS = Path(os.environ.get("AEKIT_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "run"
    aekit.train_run(path, aekit.make_config(latent_dim=4, hidden=(32,)), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=15, batch_size=64, lr=3e-3, device="cpu"), progress=False)  # fmt: skip
    aekit.load_run(path).priors.fit("gmm", conditional=True, components=2)  # the Sample panel's prior and labels
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-table")
    rng = np.random.default_rng(0)
    np.save(folder / "table.npy", (rng.normal(size=(300, 2)) @ rng.normal(size=(2, 5)) * 10 + 50).astype(np.float32))
    aekit.train_run(folder / "run", aekit.make_config(latent_dim=2, hidden=(16,)),
                    aekit.DataConfig(name=str(folder / "table.npy")), TrainConfig(epochs=5, device="cpu"),
                    progress=False)  # fmt: skip
    return folder / "run"


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(run, map_points=300))


def rows(run, n=5):
    loaded = aekit.load_run(run)
    return loaded, loaded.data().x_test[:n]


def test_every_endpoint_equals_the_in_process_model(client, run):
    loaded, x = rows(run)
    flat = x.reshape(len(x), -1).tolist()
    codes = client.post("/v1/encode", json={"inputs": flat}).json()["codes"]
    np.testing.assert_allclose(codes, encode(loaded.model, x).numpy(), atol=1e-6)
    outputs = client.post("/v1/reconstruct", json={"inputs": flat}).json()["outputs"]
    np.testing.assert_allclose(outputs, reconstruct(loaded.model, x).reshape(5, -1).numpy(), atol=1e-6)
    decoded = client.post("/v1/decode", json={"codes": codes}).json()["outputs"]
    with torch.no_grad():
        expected = loaded.model.decode(torch.tensor(codes)).reshape(5, -1).numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    scores = client.post("/v1/score", json={"inputs": flat}).json()["scores"]
    np.testing.assert_allclose(scores, (squared_errors(loaded.model, x) / 64).numpy(), atol=1e-6)
    info = client.get("/v1/info").json()
    assert info["config"]["body"] == {"kind": "mlp", "hidden": [32], "activation": "relu"}
    assert info["metrics"]["test_sse_per_image"] > 0 and client.get("/healthz").json() == {"status": "ok"}
    assert "/v1/score" in client.get("/openapi.json").json()["paths"] and client.get("/docs").status_code == 200


def test_a_npy_body_gives_the_same_scores(client, run):
    _, x = rows(run)
    buffer = io.BytesIO()
    np.save(buffer, x.reshape(5, -1).numpy())
    binary = client.post("/v1/score", content=buffer.getvalue(), headers={"content-type": "application/x-npy"})
    as_json = client.post("/v1/score", json={"inputs": x.reshape(5, -1).tolist()})
    np.testing.assert_allclose(binary.json()["scores"], as_json.json()["scores"], rtol=1e-6)


def test_table_runs_take_and_give_the_original_units(table_run):
    client = TestClient(create_app(table_run, map_points=50))
    raw = np.load(table_run.parent / "table.npy")[:3]
    outputs = np.array(client.post("/v1/reconstruct", json={"inputs": raw.tolist()}).json()["outputs"])
    loaded = aekit.load_run(table_run)  # the CLI's path: raw rows -> standardized -> model -> raw units
    x = loaded.space.to_model(raw)
    np.testing.assert_allclose(outputs, loaded.space.to_data(reconstruct(loaded.model, x)).numpy(), rtol=1e-5)
    assert np.abs(outputs).mean() > 10  # raw units (the table's values are around 50), not standardized ones
    assert client.get("/v1/info").json()["is_image"] is False


BAD = [
    ({"inputs": [[0.5] * 3]}, 422, "inputs: each row must have 64 values or be shaped [8, 8] or [1, 8, 8] (the model's "
                                   "width); got 3"),
    ('{"inputs": [[NaN' + ", 0" * 63 + "]]}", 422, "inputs.0.0: Input should be a finite number"),
    ('{"inputs": [[1e999' + ", 0" * 63 + "]]}", 422, "inputs.0.0: Input should be a finite number"),
    ({"inputs": [["a"] + [0] * 63]}, 422, "inputs.0.0: Input should be a valid number"),
    ({"inputs": []}, 422, "inputs: List should have at least 1 item"),
    ({"inputs": [[0] * 64, [0] * 63]}, 422, "inputs: rows of different shapes"),
    ({"rows": [[0] * 64]}, 422, "inputs: Field required"),
    ("not json", 422, "body: Invalid JSON"),
    ({"inputs": [[0] * 64] * (MAX_ROWS + 1)}, 422, f"inputs: List should have at most {MAX_ROWS} items"),
]


@pytest.mark.parametrize("body, status, message", BAD)
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_server_keeps_serving(client, run, body, status, message):
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status and message in response.json()["detail"], response.text
    assert "Traceback" not in response.text
    good = client.post("/v1/score", json={"inputs": [[0.5] * 64]})
    assert good.status_code == 200 and len(good.json()["scores"]) == 1


def test_oversized_bodies_and_other_bad_requests(client):
    huge = client.post("/v1/score", content=b"0" * 10, headers={"content-type": "application/json",
                                                                "content-length": str(2**30)})  # fmt: skip
    assert huge.status_code == 413 and "over the" in huge.json()["detail"]
    assert client.post("/v1/decode", json={"codes": [[0.0] * 3]}).json()["detail"] == (
        "codes: each row must have 4 values (the model's code size); got 3")
    npy = client.post("/v1/score", content=b"garbage", headers={"content-type": "application/x-npy"})
    assert npy.status_code == 422 and "body: not a .npy array" in npy.json()["detail"]
    assert client.get("/v1/explore/example/99999").status_code == 404
    assert client.get("/v1/explore/map/umap").status_code == 404
    assert client.get("/v1/explore/samples?n=100000").status_code == 422
    assert client.get("/../../etc/passwd").status_code == 404  # no path from a request reaches the file system
    assert client.get("/healthz").status_code == 200


def test_explorer_endpoints(client, run):
    info = client.get("/v1/info").json()
    points = client.get("/v1/explore/map/pca").json()
    assert len(points["x"]) == 300 and len(points["labels"]) == 300
    # clicking the PCA map decodes exactly: the mean code plus the two components
    point = client.post("/v1/explore/point", json={"map": "pca", "x": points["x"][0], "y": points["y"][0]}).json()
    assert len(point["code"]) == info["latent_dim"] and "exact" in point["how"]
    example = client.get("/v1/explore/example/0").json()
    assert len(example["input"]) == 64 and 0 <= example["score"]["percentile"] <= 100
    probe = client.post("/v1/explore/probe", json={"inputs": [example["input"]]}).json()
    assert probe["nearest"][0]["index"] == 0 and probe["nearest"][0]["distance"] < 1e-5  # itself, first
    samples = client.get("/v1/explore/samples?n=4").json()
    assert len(samples["prior"]) == 4 and len(samples["fitted"]) == 4 and 0.4 <= samples["holes"] <= 1
    assert info["priors"] == [{"name": "normal", "labels": []}, {"name": "gmm", "labels": list(range(10))}]
    chosen = client.get("/v1/explore/samples?n=4&seed=5&prior=gmm&label=3").json()["chosen"]
    assert np.allclose(chosen, aekit.load_run(run).priors.sample(4, "gmm", label=3, seed=5).reshape(4, -1).numpy())
    for query, needle in (("prior=diffusion", "has no 'diffusion' prior"), ("prior=gmm&label=99", "label 99 is not"),
                          ("prior=flow", "unknown prior 'flow'")):  # fmt: skip
        refused = client.get(f"/v1/explore/samples?n=4&{query}")
        assert refused.status_code == 422 and needle in refused.json()["detail"]


def test_impute_and_the_erasers_inpaint_fill_only_the_missing_values(client, run):
    example = client.get("/v1/explore/example/2").json()["input"]
    holes = [v if i % 3 else None for i, v in enumerate(example)]
    filled = client.post("/v1/impute", json={"inputs": [holes, example]}).json()["outputs"]
    given = [i for i, v in enumerate(holes) if v is not None]
    assert [filled[0][i] for i in given] == [example[i] for i in given]  # exactly as sent
    assert filled[1] == example and all(0 <= v <= 1 for v in filled[0])
    erased = [v if i < 32 else None for i, v in enumerate(example)]  # the bottom half rubbed out
    inpainted = client.post("/v1/explore/inpaint", json={"inputs": [erased]}).json()
    assert inpainted["filled"][:32] == example[:32] and "trained without holes" in inpainted["how"]
    error = np.square(np.subtract(inpainted["filled"][32:], example[32:])).mean()
    blank = np.square(example[32:]).mean()  # the erased half left black
    assert error < blank, (error, blank)
    assert len(inpainted["nearest"]) == 5 and len(inpainted["reconstruction"]) == 64
    refused = client.post("/v1/impute", json={"inputs": [[None, 1.0]]})
    assert refused.status_code == 422 and "must have 64 values" in refused.json()["detail"]
    assert client.post("/v1/impute", json={"inputs": [["a"] * 64]}).status_code == 422


def test_tsne_map_clicks_average_the_nearest_codes(run):
    client = TestClient(create_app(run, map_points=120, tsne=True))
    points = client.get("/v1/explore/map/tsne").json()
    point = client.post("/v1/explore/point", json={"map": "tsne", "x": points["x"][3], "y": points["y"][3]}).json()
    assert "distance-weighted average of the 8 nearest codes" in point["how"]


@pytest.fixture(scope="module")
def server(run):
    """The app over a real socket: uvicorn in a thread on a free loopback port."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(run, map_points=500), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_over_a_real_socket(server, run):
    import httpx2 as httpx  # the maintained fork of httpx (same API), which starlette's TestClient also uses

    _, x = rows(run, 3)
    with httpx.Client(base_url=server, timeout=30) as http:
        bad = http.post("/v1/score", json={"inputs": [[1.0, 2.0]]})
        assert bad.status_code == 422 and "got 2" in bad.json()["detail"]
        good = http.post("/v1/score", json={"inputs": x.reshape(3, -1).tolist()})
        assert good.status_code == 200 and len(good.json()["scores"]) == 3
        assert http.get("/").text.startswith("<!doctype html>")


def find_browser():
    return next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
def test_the_page_in_a_real_browser(server):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_browser(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='true']", timeout=30_000)

        def decoded():
            return page.evaluate("document.getElementById('decoded').toDataURL()")

        def updates():
            return int(page.evaluate("document.getElementById('decoded').dataset.updates || 0"))

        # clicking the map decodes that point
        before, count = decoded(), updates()
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
        page.wait_for_function(f"Number(document.getElementById('decoded').dataset.updates) > {count}")
        after_click = decoded()
        assert after_click != before and "PCA inverse transform" in page.inner_text("#decoded-text")

        # moving a slider changes the decoded image
        count = updates()
        page.locator("#z0").fill(page.locator("#z0").get_attribute("max"))
        page.wait_for_function(f"Number(document.getElementById('decoded').dataset.updates) > {count}")
        assert decoded() != after_click and "slider z0" in page.inner_text("#decoded-text")

        # a stroke on the drawing canvas gets a score
        box = page.locator("#draw").bounding_box()
        page.mouse.move(box["x"] + 110, box["y"] + 40)
        page.mouse.down()
        for step in range(12):
            page.mouse.move(box["x"] + 110, box["y"] + 40 + 12 * step)
        page.mouse.up()
        page.wait_for_function("document.getElementById('probe-score').textContent.includes('anomaly score')")
        assert "of the test examples" in page.inner_text("#probe-score")
        assert float(page.evaluate("document.getElementById('probe-error').dataset.peak")) > 0  # the error map
        assert page.locator("#nearest canvas").count() == 5
        page.wait_for_function("document.getElementById('decoded-text').textContent.includes('your drawing')")
        assert page.locator("#legend span").count() == 10  # the map's colours, named

        # hovering shows an example; interpolating between two picks and sampling draw strips
        box = page.locator("#map").bounding_box()
        x = page.evaluate("toCanvas(map.x[0], map.y[0])")
        page.mouse.move(box["x"] + x[0] + 1, box["y"] + x[1] + 1)
        page.wait_for_function("document.getElementById('hover-text').textContent.startsWith('example')")
        page.click("#pick-a")
        x = page.evaluate("toCanvas(map.x[1], map.y[1])")
        page.mouse.move(box["x"] + x[0] + 1, box["y"] + x[1] + 1)
        page.wait_for_function("document.getElementById('hover-text').textContent.startsWith('example 1')")
        page.click("#pick-b")
        page.click("#interpolate")
        page.wait_for_function("document.querySelectorAll('#interp canvas').length === 10")
        assert page.locator("#prior canvas").count() == 16 and "holes measure" in page.inner_text("#holes")

        # the eraser: the hovered example into the drawing, part of it rubbed out, filled in by the model
        page.click("#use-hovered")
        page.wait_for_function("document.getElementById('probe-score').textContent.includes('anomaly score')")
        page.check("#tool-eraser")
        box = page.locator("#draw").bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + 112)
        page.mouse.down()
        for step in range(10):
            page.mouse.move(box["x"] + 40 + 15 * step, box["y"] + 112)
        page.mouse.up()
        page.wait_for_function("Number(document.getElementById('fill-out').dataset.updates) > 0")
        assert "erased pixels filled in" in page.inner_text("#fill-how") and page.is_visible("#fill-panel")
        assert page.locator("#nearest canvas").count() == 5  # the nearest examples of the filled digit

        # the Sample panel offers the run's fitted prior, and its labels
        assert page.input_value("#priorkind") == "gmm" and page.locator("#priorlabel option").count() == 11
        page.wait_for_function("document.querySelectorAll('#chosen canvas').length === 16")
        page.evaluate("document.getElementById('chosen').innerHTML = ''")
        page.select_option("#priorlabel", "3")
        page.wait_for_function("document.querySelectorAll('#chosen canvas').length === 16")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)
        assert errors == [], errors
        browser.close()


def browse(url: str, ready: str = "body[data-ready='true']"):
    """A headless Chromium page at ``url`` (waited for ``ready``), what it loaded (the requests that got a response:
    a request the page's content-security policy blocks never leaves the browser), and its console errors."""
    playwright = pytest.importorskip("playwright.sync_api")
    context = playwright.sync_playwright().start()
    browser = context.chromium.launch(executable_path=find_browser(), args=["--no-sandbox", "--disable-gpu",
                                      "--disable-dev-shm-usage", "--disable-background-networking"])  # fmt: skip
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests, errors = [], []
    page.on("response", lambda response: requests.append(response.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" and
            "Content Security Policy" not in message.text else None)  # fmt: skip
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)
    return context, browser, page, requests, errors


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_pages_load_nothing_from_another_host(server, path):
    context, browser, page, requests, errors = browse(server + path, "#swagger-ui .info, redoc-wrapper, .api-content"
                                                      if path == "/redoc" else "#swagger-ui .info")  # fmt: skip
    if path == "/docs":
        assert "/v1/score" in page.inner_text("#swagger-ui")
    foreign = [url for url in requests if not url.startswith((server, "data:", f"blob:{server}"))]
    assert foreign == [], foreign
    browser.close()
    context.stop()


@contextlib.contextmanager
def served(app):
    """``app`` served by uvicorn over a real socket in a thread: its URL, while the block runs."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def browsed(url: str, screenshot: str):
    """The page at ``url`` (:func:`browse`) for the block; after it, the page's screenshot under the test artifacts,
    no console errors, and the browser closed."""
    context, browser, page, _, errors = browse(url)
    try:
        yield page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        assert errors == [], errors
    finally:
        browser.close()
        context.stop()


@pytest.fixture(scope="module")
def named_table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-named")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 5)) * 10 + 50
    (folder / "t.csv").write_text("height,width,depth,mass,price\n" + "".join(",".join(f"{v:.3f}" for v in row) + "\n"
                                                                          for row in values))  # fmt: skip
    aekit.train_run(folder / "run", aekit.make_config(latent_dim=2, hidden=(16,)), aekit.DataConfig(name=str(folder /
                    "t.csv")), TrainConfig(epochs=3, device="cpu"), progress=False)  # fmt: skip
    return folder / "run"


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
def test_a_table_run_in_the_browser_has_named_bars_and_no_image_panels(named_table_run):
    from fastapi.testclient import TestClient

    info = TestClient(create_app(named_table_run, map_points=50)).get("/v1/info").json()
    assert info["feature_names"] == ["height", "width", "depth", "mass", "price"] and not info["is_image"]
    with served(create_app(named_table_run, map_points=50)) as url, browsed(url + "/", "serve-table.png") as page:
        for panel in ("#draw-panel", "#probe-panel", "#fill-panel"):
            assert not page.is_visible(panel), panel
        assert page.evaluate("document.getElementById('decoded').width") == 360
        assert page.evaluate("document.getElementById('decoded').dataset.drawn") == "bars"


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
def test_a_series_run_in_the_browser_draws_its_windows_as_curves(tmp_path):
    """The explorer of a series run maps its windows and draws each (the decoded code, the samples) as one curve per
    channel, not as bars: the canvas says what it drew, and a curve leaves pixels in most of its columns."""
    t = np.arange(1200)[:, None]
    noise = 0.05 * np.random.default_rng(0).normal(size=(1200, 2))
    series = np.sin(2 * np.pi * t / 30 + np.array([[0.0, 1.0]])) + noise
    np.savetxt(tmp_path / "s.csv", series, delimiter=",", header="a,b", comments="", fmt="%.5f")
    data = aekit.DataConfig(name=str(tmp_path / "s.csv"), series=True)
    aekit.train_run(tmp_path / "run", aekit.make_config(latent_dim=4, hidden=(32,)), data, TrainConfig(epochs=2,
                    device="cpu"), progress=False)  # fmt: skip
    with served(create_app(tmp_path / "run", map_points=50)) as url, browsed(url + "/", "serve-series.png") as page:
        assert not page.is_visible("#draw-panel")
        assert page.evaluate("document.getElementById('decoded').dataset.drawn") == "curves"
        inked = page.evaluate("""(() => {  // the columns of the decoded canvas with any drawn (non-blank) pixel
            const c = document.getElementById('decoded'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
            let columns = 0;
            for (let x = 0; x < c.width; x++) {
              for (let y = 0; y < c.height; y++) if (d.data[4 * (y * c.width + x) + 3] > 0) { columns++; break; }
            }
            return columns / c.width;
        })()""")
        assert inked > 0.9, inked  # a curve across the canvas (bars of 60 values would leave gaps between them too)


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (make test installs it where apt can)")
def test_a_sparse_autoencoder_opens_on_t_sne_with_its_features(tmp_path):
    aekit.train_run(tmp_path / "sae", aekit.make_config("sae", latent_dim=48, k=4), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=2, device="cpu"), progress=False, analysis=False)  # fmt: skip
    app = create_app(tmp_path / "sae", map_points=200, tsne=True)
    with served(app) as url, browsed(url + "/", "serve-sae.png") as page:
        assert page.input_value("#mapkind") == "tsne" and "t-SNE has no inverse" in page.inner_text("#maphow")
        assert page.is_visible("#features-panel") and int(page.evaluate("document.getElementById('features-panel')"
                                                                        ".dataset.features")) == 12  # fmt: skip


def test_a_missing_serve_extra_is_one_line(run, monkeypatch, capsys):
    from aekit.faces.cli import main

    monkeypatch.setitem(__import__("sys").modules, "fastapi", None)  # as if fastapi were not installed
    assert main(["serve", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "aekit serve: error: aekit serve needs the 'serve' extra: pip install 'aekit[serve]'"


def test_a_busy_port_is_one_line_naming_port_before_the_run_loads(run, capsys):
    from aekit.faces.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(run), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"aekit serve: error: --port {port}: 127.0.0.1:{port} is already in use (another server?); pick "
                   "another port with --port N")
    assert main(["serve", str(run), "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid: not an address of this machine" in capsys.readouterr().err


def fake_explorer():
    """Three rows through a small untrained model: what a handler test needs, with no training and no files."""
    from aekit.core.fitted import Fitted
    from aekit.core.space import Scaler, Space
    from aekit.faces.serve import Explorer
    from aekit.run.runs import Run

    torch.manual_seed(0)
    model = aekit.AutoEncoder((4,), latent_dim=2, hidden=(3,), output="linear")
    space = Space((4,), Scaler.from_moments(np.zeros(4), np.ones(4)))  # raw values, as they come
    run = Run(Path("fake"), model.config, aekit.DataConfig(), TrainConfig(), Fitted(model, space))
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    return Explorer(run, x, [0, 1, 0], {"holes": 0.75}, run.score(x).numpy())


def test_handlers_run_on_a_fake_through_the_dependency():
    from aekit.faces.serve import get_explorer, make_app

    explorer = fake_explorer()
    app = make_app(None)
    app.dependency_overrides[get_explorer] = lambda: explorer
    client = TestClient(app)
    rows = explorer.x.tolist()
    scores = client.post("/v1/score", json={"inputs": rows}).json()["scores"]
    with torch.no_grad():
        expected = (explorer.model(explorer.x) - explorer.x).square().mean(1).numpy()  # the mean squared error
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    codes = client.post("/v1/encode", json={"inputs": rows}).json()["codes"]
    assert np.asarray(codes).shape == (3, 2)
    assert len(client.post("/v1/decode", json={"codes": codes}).json()["outputs"][0]) == 4
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows, dtype=np.float32))
    binary = client.post("/v1/score", content=buffer.getvalue(), headers={"content-type": "application/x-npy"})
    np.testing.assert_allclose(binary.json()["scores"], scores, rtol=1e-6)
    assert client.post("/v1/score", json={"inputs": [[1.0]]}).json()["detail"] == \
        "inputs: each row must have 4 values (the model's width); got 1"  # fmt: skip
    assert client.get("/v1/explore/map/pca").json()["labels"] == [0, 1, 0]
    assert client.get("/v1/explore/samples?n=2").json()["holes"] == 0.75


def test_the_openapi_document_is_generated_from_the_body_models(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == aekit.__version__
    score = spec["paths"]["/v1/score"]["post"]
    body = score["requestBody"]["content"]
    assert set(body) == {"application/json", "application/x-npy"}
    assert "inputs" in body["application/json"]["schema"]["properties"]
    response = score["responses"]["200"]["content"]["application/json"]["schema"]
    assert response == {"$ref": "#/components/schemas/Scores"}
    assert spec["components"]["schemas"]["Scores"]["properties"]["scores"]["type"] == "array"
    point = spec["paths"]["/v1/explore/point"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert point == {"$ref": "#/components/schemas/Point"}


def test_explain_gives_per_feature_errors_that_sum_to_the_score():
    from aekit.faces.serve import get_explorer, make_app

    explorer = fake_explorer()
    app = make_app(None)
    app.dependency_overrides[get_explorer] = lambda: explorer
    body = TestClient(app).post("/v1/explain", json={"inputs": explorer.x.tolist()}).json()
    np.testing.assert_allclose(np.sum(body["feature_errors"], axis=1), body["scores"], rtol=1e-5)
    assert len(body["feature_errors"][0]) == 4
