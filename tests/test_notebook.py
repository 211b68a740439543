"""The chapter as a notebook, executed headless end to end (one epoch), and runs that render in Jupyter."""

import base64
import os
from pathlib import Path

import pytest

import aekit
from aekit import TrainConfig

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "chapter.ipynb"


def test_the_chapter_notebook_runs_and_shows_its_figures(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the 'notebook' extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the 'notebook' extra is not installed")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    monkeypatch.setenv("AEKIT_NOTEBOOK_EPOCHS", "1")  # the parameter that cuts the chapter's 10 epochs
    monkeypatch.setenv("AEKIT_NOTEBOOK_RUN", str(tmp_path / "run"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {
        "path": str(tmp_path)}})  # fmt: skip
    client.execute()  # raises CellExecutionError if any cell raises
    pictures = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                pictures[cell.source.strip().splitlines()[-1]] = base64.b64decode(data["image/png"])
            if "text/html" in data and "aekit run" in data["text/html"]:
                assert "PCA (k=32)" in data["text/html"] and "<img" in data["text/html"]
    for figure in ('run.analysis.plot("reconstructions")', 'run.analysis.plot("samples")', 'run.analysis.plot("latent")'):
        assert figure in pictures and pictures[figure].startswith(b"\x89PNG"), sorted(pictures)
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_run_renders_its_metrics_and_reconstructions(tmp_path):
    aekit.train_run(tmp_path / "run", aekit.make_config(latent_dim=4, hidden=(16,)), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=2, batch_size=64, device=os.environ.get("AEKIT_TEST_DEVICE", "cpu")),
                    progress=False, analysis=False)  # fmt: skip
    run = aekit.load_run(tmp_path / "run")
    page = run._repr_html_()
    metrics = run.metrics()
    assert f"{metrics['test_sse_per_image']:.5g}" in page and f"{metrics['pca_test_sse_per_image']:.5g}" in page
    assert "autoencoder (k=4)" in page and "2 epochs" in page
    assert "<img alt='reconstructions' src='data:image/png;base64," in page
    figure = run.analysis.plot("curves")  # the figure aekit plot writes, no file
    assert figure.axes and not (tmp_path / "run" / "figures").exists()
