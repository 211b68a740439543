"""TensorBoard logs, read back with TensorBoard's own reader: a scalar per history column per epoch, an image per
epoch, the projector embedding of the test codes; resumed runs continue the curves without duplicated steps."""

import os
import sys

import numpy as np
import pytest
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.faces.cli import main
from aekit.run.rundir import RunDir

pytest.importorskip("tensorboard", reason="the 'tensorboard' extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")
TRAIN = ["train", "--data", "digits", "--latent-dim", "4", "--hidden", "16", "--batch-size", "64", "--device", DEVICE,
         "--no-progress"]  # fmt: skip


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator, tag):
    return [event.step for event in accumulator.Scalars(tag)]


def test_every_history_column_is_a_scalar_per_epoch_with_images_and_a_projector(tmp_path):
    run, board = tmp_path / "run", tmp_path / "tb"
    assert main([*TRAIN, "--model", "sparse", "--epochs", "3", "--out", str(run), "--tensorboard", str(board)]) == 0
    logged = events(board)
    history = RunDir(run).read_history()
    columns = {name for row in history for name in row} - {"epoch"}
    assert columns >= {"train_loss", "test_sse_per_image", "test_mse_per_pixel", "seconds", "train_recon", "train_l1"}
    assert set(logged.Tags()["scalars"]) == columns | {"lr"}
    for name in columns:
        assert steps(logged, name) == [1, 2, 3], name
        assert [e.value for e in logged.Scalars(name)] == pytest.approx([row[name] for row in history], rel=1e-6)
    assert [e.step for e in logged.Images("reconstructions")] == [1, 2, 3]
    assert (logged.Images("reconstructions")[0].width, logged.Images("reconstructions")[0].height) == (8 * 8, 2 * 8)
    config = (board / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "codes:00003"' in config and "sprite" in config and "metadata_path" in config
    folder = board / "00003" / "codes"
    labels = (folder / "metadata.tsv").read_text().split()
    codes = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    assert codes.shape == (359, 4) and len(labels) == 359 and set(labels) == {str(d) for d in range(10)}


def test_a_resumed_run_continues_the_curves_without_duplicated_steps(tmp_path):
    run, board = tmp_path / "run", tmp_path / "tb"
    assert main([*TRAIN, "--epochs", "2", "--out", str(run), "--tensorboard", str(board)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "4", "--tensorboard", str(board), "--no-progress"]) == 0
    logged = events(board)
    assert steps(logged, "train_loss") == [1, 2, 3, 4] and steps(logged, "lr") == [1, 2, 3, 4]
    assert [e.value for e in logged.Scalars("test_sse_per_image")] == pytest.approx(
        [row["test_sse_per_image"] for row in RunDir(run).read_history()], rel=1e-6)
    # an epoch logged by a run that died before its checkpoint is purged when the epoch is trained again
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(board)) as ghost:
        ghost.add_scalar("train_loss", 999.0, 5)
    assert main(["train", "--resume", str(run), "--epochs", "5", "--tensorboard", str(board), "--no-progress"]) == 0
    logged = events(board)
    assert steps(logged, "train_loss") == [1, 2, 3, 4, 5] and logged.Scalars("train_loss")[-1].value < 999


def test_without_the_option_nothing_is_written_outside_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_missing_extra_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert exit_code([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path)]) == 2
    one_error_line(capsys, "--tensorboard needs the 'tensorboard' extra: pip install 'aekit[tensorboard]'")
    assert not (tmp_path / "run").exists()  # refused before training


def test_the_estimators_log_too(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 6))
    aekit.AutoEncoderTransformer(2, max_epochs=3, n_iter_no_change=None, tensorboard=tmp_path / "tb",
                                 random_state=0).fit(x)  # fmt: skip
    logged = events(tmp_path / "tb")
    assert steps(logged, "train_loss") == [1, 2, 3] and (tmp_path / "tb" / "projector_config.pbtxt").is_file()
