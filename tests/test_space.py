"""The one door between a user's rows and a model: layouts, scaling chosen from the data, the rules said once."""

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line

import aekit
from aekit.core.space import NEAR_CONSTANT, Scaler, Space
from aekit.errors import ConfigError, DataError
from aekit.faces.cli import main


def test_an_image_space_takes_every_layout_of_its_images():
    space = Space((1, 8, 8))
    x = np.random.default_rng(0).random((5, 1, 8, 8))
    for layout in (x, x.reshape(5, 8, 8), x.reshape(5, 64)):
        assert torch.equal(space.to_model(layout), torch.from_numpy(x.astype(np.float32)))
    with pytest.raises(DataError, match=r"shape \(5, 63\) does not match the model's input \(N, 1, 8, 8\) or "
                                        r"\(N, 64\) or \(N, 8, 8\)"):  # fmt: skip
        space.to_model(np.zeros((5, 63)))
    assert Space((3, 8, 8)).layouts() == [(3, 8, 8), (192,)]  # three channels: no (H, W) layout
    assert Space((6,)).layouts() == [(6,)]


def test_the_scaling_is_chosen_from_the_data():
    rng = np.random.default_rng(0)
    pixels = rng.random((100, 1, 4, 4)) * (rng.random((100, 1, 4, 4)) < 0.1)  # mostly 0, like MNIST's border
    assert Space.fit(pixels).scaling == "unit"  # bounded: used as it is, not blown up by a spread of thousandths
    assert Space.fit((pixels * 255).astype(np.uint8)).scaling == "unit"
    table = rng.normal(size=(100, 3)) * [1, 100, 1e-3] + 5
    space = Space.fit(table)
    assert space.scaling == "standard"
    x = space.to_model(table).double()
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0, unbiased=False), 1, atol=1e-4)
    np.testing.assert_allclose(space.to_data(space.to_model(table)), table, rtol=1e-5)
    assert Space.fit(pixels, scaling="standard").scaling == "standard"
    with pytest.raises(DataError, match=r"values must lie in \[0, 1\] for this model"):
        Space.fit(table, scaling="unit")


def test_the_near_constant_rule_is_said_once_and_missing_cells_are_skipped():
    scaler = Scaler.from_moments(np.array([1.0, 2.0, np.nan]), np.array([NEAR_CONSTANT / 2, 3.0, np.nan]))
    assert scaler.std.tolist() == [1.0, 3.0, 1.0] and scaler.mean.tolist() == [1.0, 2.0, 0.0]
    x = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]])
    fitted = Scaler.fit(x)
    np.testing.assert_allclose(fitted.mean.numpy(), [2.0, 6.0])
    np.testing.assert_allclose(fitted.std.numpy(), [1.0, 2.0])


def test_missing_cells_only_where_the_model_takes_them_and_overflow_is_one_line():
    space = Space.fit(np.random.default_rng(0).normal(size=(20, 3)))
    holes = np.array([[1.0, np.nan, 0.0]])
    with pytest.raises(DataError, match=r"rows: has missing cells \(NaN, first in row 0\); this model was trained "
                                        "without them"):  # fmt: skip
        space.to_model(holes, "rows")
    assert torch.isnan(space.taking_missing().to_model(holes)).sum() == 1
    with pytest.raises(DataError, match="standardizing feature 0 overflows float32"):
        Space((1,), Scaler(torch.tensor([-3e38]), torch.tensor([1.0]))).to_model(np.array([[3e38]]))
    with pytest.raises(ConfigError, match=r"loss 'bce' needs data in \[0, 1\]"):
        space.check_loss("bce")
    Space((3,)).check_loss("bce")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A digits run trained to fill holes (so that impute takes any file), and the files its commands write."""
    tmp = tmp_path_factory.mktemp("layouts")
    run = tmp / "run"
    assert main(["train", "--data", "digits", "--objective", "impute", "--latent-dim", "4", "--hidden", "16",
                 "--epochs", "2", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0  # fmt: skip
    assert main(["sample", str(run), "--n", "6", "--out", str(tmp / "sampled.npy")]) == 0
    assert main(["reconstruct", str(run), "--input", str(tmp / "sampled.npy"), "--out", str(tmp / "rebuilt.npy")]) == 0
    holes = np.load(tmp / "rebuilt.npy").copy()
    holes[:, :, 2:5, 2:5] = np.nan
    np.save(tmp / "holes.npy", holes.reshape(len(holes), -1))  # flat rows with holes
    assert main(["impute", str(run), "--input", str(tmp / "holes.npy"), "--out", str(tmp / "filled.npy")]) == 0
    return run, tmp


def test_what_sample_reconstruct_and_impute_write_goes_back_into_every_command(image_run, capsys):
    run, tmp = image_run
    for name in ("sampled", "rebuilt", "filled"):
        written = np.load(tmp / f"{name}.npy")
        assert written.shape == (6, 1, 8, 8), name  # the one documented shape of an image run's .npy
        for command in ("encode", "score", "reconstruct", "impute"):
            out = tmp / f"{name}-{command}.npy"
            assert main([command, str(run), "--input", str(tmp / f"{name}.npy"), "--out", str(out)]) == 0, command
            assert len(np.load(out)) == 6
    capsys.readouterr()


def test_every_layout_of_an_image_gives_the_same_codes_in_python_the_cli_and_http(image_run, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.faces.serve import create_app

    run, tmp = image_run
    images = np.load(tmp / "rebuilt.npy")
    layouts = {"nchw": images, "nhw": images.reshape(6, 8, 8), "flat": images.reshape(6, 64)}
    loaded = aekit.load_run(run)
    want = loaded.encode(loaded.space.to_model(images)).numpy()
    client = TestClient(create_app(run, map_points=20))
    for name, x in layouts.items():
        np.testing.assert_array_equal(loaded.encode(loaded.space.to_model(x)).numpy(), want, err_msg=name)
        np.save(tmp / f"{name}.npy", x)
        assert main(["encode", str(run), "--input", str(tmp / f"{name}.npy"), "--out", str(tmp / f"{name}-z.npy")]) == 0
        np.testing.assert_allclose(np.load(tmp / f"{name}-z.npy"), want, rtol=1e-6, err_msg=name)
        as_json = client.post("/v1/encode", json={"inputs": x.tolist()})
        assert as_json.status_code == 200, as_json.text
        np.testing.assert_allclose(as_json.json()["codes"], want, rtol=1e-5, atol=1e-6, err_msg=name)
        as_npy = client.post("/v1/encode", content=(tmp / f"{name}.npy").read_bytes(),
                             headers={"content-type": "application/x-npy"})  # fmt: skip
        np.testing.assert_allclose(as_npy.json()["codes"], want, rtol=1e-5, atol=1e-6, err_msg=name)
    scored = client.post("/v1/score", json={"inputs": images.reshape(6, 8, 8).tolist()}).json()["scores"]
    np.testing.assert_allclose(scored, loaded.score(loaded.space.to_model(images)), rtol=1e-5)
    capsys.readouterr()


def test_a_layout_the_model_does_not_take_is_one_line(image_run, capsys, tmp_path):
    run, _ = image_run
    np.save(tmp_path / "odd.npy", np.zeros((3, 8, 9), dtype=np.float32))
    assert main(["encode", str(run), "--input", str(tmp_path / "odd.npy"), "--out", str(tmp_path / "z.npy")]) == 2
    one_error_line(capsys, "odd.npy: shape (3, 8, 9) does not match the model's input (N, 1, 8, 8) or (N, 64) or "
                   "(N, 8, 8)")  # fmt: skip
