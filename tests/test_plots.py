import os
import warnings
from dataclasses import replace

import pytest
import torch
from PIL import Image

from aekit.analysis import plots
from aekit.configs import TrainConfig
from aekit.core.fitted import Fitted
from aekit.errors import DataError
from aekit.model.autoencoder import AutoEncoder
from aekit.training.loop import train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda


@pytest.fixture(scope="module", params=[2, 64])
def trained(request, digits):
    torch.manual_seed(0)
    model = AutoEncoder(digits.input_shape, latent_dim=request.param, hidden=(32,))
    history = train(model, digits, TrainConfig(epochs=2, batch_size=64, device=DEVICE), progress=False)
    return model, history


def png_size(path):
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize("kind", ["reconstructions", "samples", "latent", "interpolation"])
def test_figures_are_written(trained, digits, tmp_path, kind):
    model, _ = trained
    getattr(plots, kind)(model, digits, path=tmp_path / kind)
    assert (tmp_path / f"{kind}.svg").stat().st_size > 1000
    width, height = png_size(tmp_path / f"{kind}.png")
    assert width >= 400 and height >= 150


def test_curves_and_error_vs_dim(trained, tmp_path):
    _, history = trained
    plots.curves(history, pca_sse=3.0, path=tmp_path / "curves")
    plots.error_vs_dim([2, 4, 8], [9.0, 6.0, 4.0], [12.0, 9.0, 5.0], epochs=3, path=tmp_path / "evd")
    assert png_size(tmp_path / "curves.png")[0] >= 600 and png_size(tmp_path / "evd.png")[0] >= 400


def test_latent_figure_has_a_label_colour_bar(trained, digits):
    model, _ = trained
    fig = plots.latent(model, digits, n=200)
    assert any(ax.get_ylabel() == "label" for ax in fig.axes)  # the colour bar's axis
    titles = [ax.get_title() for ax in fig.axes]
    if model.config.latent_dim == 2:
        assert "codes (2-D, as they are)" in titles
    else:
        assert "PCA of the codes" in titles and any(t.startswith("t-SNE") for t in titles)


def test_latent_figure_of_unlabelled_data_has_one_colour_and_no_warning(trained, digits):
    model, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a single colour comes with a colour map
        fig = plots.latent(model, replace(digits, y_test=None), n=50)
    assert not any(ax.get_ylabel() == "label" for ax in fig.axes)


def test_image_figures_refuse_tabular_models(digits):
    tabular = AutoEncoder((5,), latent_dim=2, hidden=(8,), output="linear")
    with pytest.raises(DataError, match="needs image data"):
        plots.reconstructions(tabular, replace(digits, x_test=torch.zeros(4, 5)))


def test_grid_tiles_images():
    images = torch.zeros(5, 1, 3, 3)
    grid = plots._grid(images, ncol=3)
    assert grid.shape == (1, 2 * 4 - 1, 3 * 4 - 1)


def test_the_anomalies_figure_shows_the_top_scored_images_with_their_error_maps(trained, digits):
    fig = plots.draw("anomalies", Fitted(trained[0], digits.space), digits, [], {})
    assert len(fig.axes) == 3 * 8 and "most anomalous" in fig._suptitle.get_text()


def test_the_error_vs_dim_labels_stay_inside_the_frame():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plots.error_vs_dim([2, 8, 32, 64], [36.3, 17.6, 5.1, 3.2], [39.0, 26.1, 13.2, 7.8], epochs=3)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.axes[0].get_window_extent(renderer)
    for text in fig.axes[0].texts:
        box = text.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()


def test_the_latent_map_of_codes_that_are_all_alike_is_drawn_without_t_sne(digits):
    model = AutoEncoder((1, 8, 8), latent_dim=3, hidden=(8,))
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.zero_()  # every code the same (a collapsed codec's all-zero codes): t-SNE would divide by zero
    fig = plots.latent(model, digits, n=100)
    assert "no t-SNE map" in fig._suptitle.get_text()
