"""The trained runs that ship with aekit: checked by SHA-256, loaded and answering, read-only, refused when changed."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.faces.cli import main
from aekit.run import pretrained
from aekit.run.rundir import RunDir

NAMES = ("chapter", "codec", "conv30")


@pytest.fixture(scope="module")
def test_digits():
    return aekit.MNIST(train=False).data[:64].float().div(255).unsqueeze(1)


def test_the_manifest_lists_every_shipped_file_with_its_checksum_and_they_fit_the_budget():
    runs = pretrained.manifest()["runs"]
    assert sorted(runs) == sorted(NAMES) == pretrained.names()
    total = 0
    for name, entry in runs.items():
        folder = pretrained.ZOO / name
        on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert on_disk == sorted(entry["files"])
        for file, digest in entry["files"].items():
            assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest
            total += (folder / file).stat().st_size
        assert {"config.json", "model.safetensors", "metrics.json", "history.csv"} <= set(entry["files"])
        assert entry["commands"][0].startswith(f"aekit train --preset {name}") and entry["seed"] == 0
        stored = json.loads((folder / "metrics.json").read_text())
        assert all(stored[k] == v for k, v in entry["metrics"].items())
    assert total <= 10e6


@pytest.mark.parametrize("name", NAMES)
def test_every_pretrained_run_loads_and_answers(name, test_digits):
    run = aekit.pretrained(name)
    assert run.rundir.shipped and run.model_config.input_shape == (1, 28, 28)
    x = run.space.to_model(test_digits)
    z = run.encode(x)
    assert z.shape == (64, run.model_config.latent_dim)
    sse = float(((run.reconstruct(x) - test_digits) ** 2).sum((1, 2, 3)).mean())
    assert sse < {"chapter": 7.0, "codec": 6.0, "conv30": 4.0}[name]  # PCA-32 on these 64 digits: above 12
    assert run.score(x).shape == (64,)


def test_conv30_evaluates_to_its_manifest_sse():
    metrics = aekit.pretrained("conv30").evaluate(write=False, analysis=False)
    shipped = pretrained.entry("conv30")["metrics"]
    assert metrics["test_sse_per_image"] == pytest.approx(shipped["test_sse_per_image"], rel=1e-6)
    assert metrics["test_sse_per_image"] < 3.0 and metrics["pca_test_sse_per_image"] > 13.0  # Hinton 2006: 3.00


def test_pretrained_names_work_where_a_run_does(tmp_path, test_digits, capsys):
    digits = tmp_path / "digits.npy"
    np.save(digits, test_digits.numpy())
    assert main(["compress", "pretrained:codec", "--input", str(digits), "--out", str(tmp_path / "t.aek")]) == 0
    assert "bytes per row" in capsys.readouterr().out
    assert main(["decompress", "pretrained:codec", str(tmp_path / "t.aek"), "--out", str(tmp_path / "d.npy")]) == 0
    codec = aekit.pretrained("codec")
    expected = codec.decode(codec.encode(codec.space.to_model(test_digits)).round())
    assert np.allclose(np.load(tmp_path / "d.npy"), expected.numpy(), atol=1e-6)
    assert main(["sample", "pretrained:chapter", "--prior", "gmm", "--n", "8", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (8, 1, 28, 28)
    assert main(["score", "pretrained:conv30", "--input", str(digits), "--out", str(tmp_path / "s.csv")]) == 0
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 65
    capsys.readouterr()
    assert main(["pretrained"]) == 0
    listing = capsys.readouterr().out
    assert all(f"pretrained:{name}" in listing for name in NAMES)
    assert main(["pretrained", "codec"]) == 0
    assert pretrained.entry("codec")["commands"][0] in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "chapter, codec, conv30" in capsys.readouterr().out


def test_the_server_answers_for_a_pretrained_run():
    from fastapi.testclient import TestClient

    from aekit.faces.serve import create_app

    client = TestClient(create_app(pretrained.locate("chapter"), map_points=50))
    assert client.get("/v1/info").json()["latent_dim"] == 32


def test_pretrained_runs_are_read_only_and_copy_into_a_run_of_ones_own(tmp_path, capsys):
    before = {p: p.read_bytes() for p in pretrained.ZOO.rglob("*") if p.is_file()}
    for argv, needle in ((["fit-prior", "pretrained:chapter", "--prior", "gaussian"], "cannot be written into"),
                         (["fit-score", "pretrained:chapter"], "cannot be written into"),
                         (["report", "pretrained:chapter"], "give --out FILE.html"),
                         (["plot", "pretrained:chapter", "curves"], "give --out DIR"),
                         (["error-vs-dim", "pretrained:chapter"], "trains its models into it"),
                         (["train", "--resume", str(pretrained.ZOO / "chapter")], "cannot be trained further")):
        assert exit_code(argv) == 2, argv
        one_error_line(capsys, "pretrained:chapter is read-only", needle, "aekit pretrained chapter --out")
    run = aekit.pretrained("chapter")
    with pytest.raises(aekit.CheckpointError, match="read-only"):
        run.fit_score()
    run.evaluate(write=True, analysis=False)  # evaluated, not written
    assert before == {p: p.read_bytes() for p in pretrained.ZOO.rglob("*") if p.is_file()}
    assert exit_code(["encode", "pretrained:nope", "--input", "mnist", "--out", str(tmp_path / "z.npy")]) == 2
    one_error_line(capsys, "pretrained:nope: no such pretrained run (there are chapter, codec, conv30)")

    mine = tmp_path / "mine"
    assert main(["pretrained", "chapter", "--out", str(mine)]) == 0
    assert not RunDir(mine).shipped
    assert main(["plot", str(mine), "curves"]) == 0 and (mine / "figures" / "curves.png").is_file()
    capsys.readouterr()
    assert exit_code(["train", "--resume", str(mine), "--epochs", "11"]) == 2
    one_error_line(capsys, "no checkpoint.safetensors to resume from")


def test_a_changed_pretrained_file_is_refused_in_one_line_naming_it(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(pretrained.ZOO, zoo)
    monkeypatch.setattr(pretrained, "ZOO", zoo)
    model = zoo / "chapter" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(aekit.CheckpointError, match="changed since aekit shipped it"):
        aekit.pretrained("chapter")
    assert exit_code(["evaluate", "pretrained:chapter"]) == 2
    one_error_line(capsys, str(model), "changed since aekit shipped it", "reinstall aekit")
    (zoo / "codec" / "notes.txt").write_text("mine")
    assert exit_code(["evaluate", "pretrained:codec"]) == 2
    one_error_line(capsys, "notes.txt: not part of the pretrained run 'codec'")
    (zoo / "conv30" / "history.csv").unlink()
    assert exit_code(["evaluate", "pretrained:conv30"]) == 2
    one_error_line(capsys, "history.csv: missing from the pretrained run 'conv30'")
    torch.manual_seed(0)
