import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.faces.cli import main

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

TRAIN = ["train", "--data", "digits", "--latent-dim", "4", "--hidden", "16", "--epochs", "1", "--device", DEVICE,
         "--no-progress"]  # fmt: skip


@pytest.fixture
def run(tmp_path, capsys):
    path = tmp_path / "run"
    assert main([*TRAIN, "--out", str(path)]) == 0
    capsys.readouterr()
    return path


def test_train_prints_model_and_pca_rows(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "autoencoder (k=4)" in out and "PCA (k=4)" in out and "run saved in" in out


def test_evaluate_json(run, capsys):
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["latent_dim"] == 4 and metrics["pca_test_sse_per_image"] > 0


def test_encode_and_reconstruct(run, tmp_path, capsys):
    assert main(["encode", str(run), "--input", "digits", "--out", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (359, 4)
    assert main(["reconstruct", str(run), "--input", "digits", "--out", str(tmp_path / "r.csv")]) == 0
    assert np.loadtxt(tmp_path / "r.csv", delimiter=",").shape == (359, 64)
    images = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "mine.npy", images)
    assert main(["encode", str(run), "--input", str(tmp_path / "mine.npy"), "--out", str(tmp_path / "m.csv")]) == 0
    assert np.loadtxt(tmp_path / "m.csv", delimiter=",").shape == (5, 4)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "--data", "fashion"], ["unknown dataset 'fashion'"]),
        (["train", "--preset", "huge"], ["invalid choice: 'huge'"]),
        (["train", "--epochs", "0"], ["--epochs", "'0' must be at least 1"]),
        (["train", "--lr", "abc"], ["'abc' is not a number"]),
        (["train", "--data", "missing.npy"], ["missing.npy: no such file or folder"]),
        (["evaluate", "nowhere"], ["nowhere: no such run directory"]),
        (["train", "--weight-decay", "-1", "--data", "digits"], ["weight_decay=-1.0 must be zero or positive"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needles, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert exit_code(argv) == 2
    one_error_line(capsys, *needles)


def test_bad_user_files_are_one_line(run, tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan))
    np.save(tmp_path / "shape.npy", np.zeros((2, 10)))
    assert main(["encode", str(run), "--input", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "z.npy")]) == 2
    one_error_line(capsys, "nan.npy: contains NaN")
    assert main(["encode", str(run), "--input", str(tmp_path / "shape.npy"), "--out", str(tmp_path / "z.npy")]) == 2
    one_error_line(capsys, "shape (2, 10) does not match the model's input (N, 1, 8, 8)")
    assert main(["encode", str(run), "--input", "digits", "--out", str(tmp_path / "z.txt")]) == 2
    one_error_line(capsys, "unsupported output type '.txt'; use .npy or .csv")


def test_existing_run_refused_naming_both_options(run, capsys):
    assert main([*TRAIN, "--out", str(run)]) == 2
    one_error_line(capsys, "--resume", "--overwrite")


def test_resume_from_cli(run, capsys):
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert len((run / "history.csv").read_text().splitlines()) == 3


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "aekit", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--preset", "--resume", "--overwrite", "--device", "chapter", "hinton2006", "--loss"):
        assert option in result.stdout
    result = subprocess.run([sys.executable, "-m", "aekit", "datasets"], capture_output=True, text=True)
    assert result.returncode == 0 and "mnist" in result.stdout and "digits" in result.stdout


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`aekit datasets | head -1`: the pipe's reader is gone before aekit writes (its end closed before the start),
    so every write fails; the command ends with a shell's 141 and says nothing, no "Broken pipe" error."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "aekit", "datasets"], stdout=write_end, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_score_writes_one_anomaly_score_per_row(tmp_path, capsys):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(300, 6))
    np.savetxt(tmp_path / "train.csv", table, delimiter=",", header="a,b,c,d,e,f", comments="")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--latent-dim", "2", "--hidden", "16",
                 "--epochs", "30", "--batch-size", "32", "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    odd = np.vstack([table[:5], rng.normal(size=(5, 6)) * 4])  # 5 typical rows, 5 off the data's plane
    np.savetxt(tmp_path / "new.csv", odd, delimiter=",", header="a,b,c,d,e,f", comments="")
    assert main(["score", str(run), "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "s.csv")]) == 0
    scores = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert scores.shape == (10,) and scores[:5].max() < scores[5:].min()
    assert (tmp_path / "s.csv").read_text().startswith("score\n")
    assert main(["score", str(run), "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "l.csv"),
                 "--contamination", "0.05"]) == 0  # fmt: skip
    labelled = np.loadtxt(tmp_path / "l.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "l.csv").read_text().startswith("score,outlier\n")
    assert labelled[:5, 1].tolist() == [0] * 5 and labelled[5:, 1].tolist() == [1] * 5  # the off-plane rows
    np.testing.assert_allclose(labelled[:, 0], scores, rtol=1e-6)
    threshold = float(np.median(scores))
    assert main(["score", str(run), "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "t.npy"),
                 "--threshold", str(threshold)]) == 0  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "t.npy")[:, 1], (scores > threshold).astype(float))


@pytest.mark.parametrize("model", ["mlp", "conv", "denoising", "sparse", "linear", "vae", "vq", "vae --body conv",
                                   "vq --body conv", "denoising --body conv"])
def test_every_model_trains_on_a_small_user_array(model, tmp_path, capsys):
    images = np.random.default_rng(0).random((60, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "mine.npy", images)
    name, *more = model.split()
    body = more[1] if more else aekit.SHORTCUTS[name][0]
    own = {"mlp": ["--hidden", "8"], "conv": ["--channels", "4"], "linear": []}[body]
    own += ["--groups", "3", "--codebook-size", "16"] if name == "vq" else []
    code = exit_code(["train", "--data", str(tmp_path / "mine.npy"), "--model", name, *more, "--latent-dim", "3",
                      *own, "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "autoencoder (k=3)" in capsys.readouterr().out
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (stored["body"]["kind"], stored["objective"]["kind"]) == (body, aekit.SHORTCUTS[name][1])


def test_vq_trains_on_mnist_from_the_cli(tmp_path, capsys):
    assert main(["train", "--model", "vq", "--limit", "2000", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["vq_codebook_usage"] > 0 and metrics["vq_perplexity"] > 1
    assert main(["plot", str(tmp_path / "run"), "codebook"]) == 0
    assert (tmp_path / "run" / "figures" / "codebook.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beta", "7"], "option --beta does not apply to a mlp body with the plain objective: it belongs to the vae objective"),
        (["--model", "conv", "--hidden", "8"], "option --hidden does not apply to a conv body with the plain objective: it belongs to the mlp body"),
        (["--model", "vae", "--noise", "masking"], "option --noise does not apply to a mlp body with the vae objective: it belongs to the denoising objective"),
        (["--model", "linear", "--activation", "tanh"], "option --activation does not apply to a linear body with the plain objective: it belongs to the mlp body and the conv body"),
        (["--objective", "vq", "--sparsity", "0.1"], "option --sparsity does not apply to a mlp body with the vq objective: it belongs to the sparse objective"),
        (["--model", "vq", "--groups", "5"], "groups=5 must be a positive divisor of the code size latent_dim=32"),
        (["--body", "rnn"], "argument --body: invalid choice: 'rnn'"),
    ],
)
def test_an_option_that_does_not_apply_is_one_clear_error(args, message, tmp_path, capsys):
    assert exit_code(["train", *args, "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "run").exists()


def test_every_part_option_is_a_flag_with_the_fields_default_and_help():
    from dataclasses import fields

    result = subprocess.run([sys.executable, "-m", "aekit", "train", "--help"], capture_output=True, text=True,
                            env={**__import__("os").environ, "COLUMNS": "200"})  # fmt: skip
    for part in (*aekit.BODIES.values(), *aekit.OBJECTIVES.values()):
        for f in fields(part):
            flag = "--" + f.name.replace("_", "-")
            assert flag in result.stdout, flag
            assert f.metadata["help"] in " ".join(result.stdout.split()), f.name


def test_every_training_and_data_field_is_a_flag_with_its_default_and_help():
    from dataclasses import fields

    from aekit.faces.parser import config_dest

    parser = aekit.faces.parser.build_parser()
    result = subprocess.run([sys.executable, "-m", "aekit", "train", "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    text = " ".join(result.stdout.split())
    for cls in (aekit.TrainConfig, aekit.DataConfig):
        defaults = vars(parser.parse_args(["train"]))
        for f in fields(cls):
            assert f.metadata["help"] in text, f.name  # the help comes from the field, once
            assert defaults[config_dest(f)] is None  # "not given": the dataclass holds the default
    assert "--optimizer {adam,adamw,sgd}" in text and "--gradients {auto,eager,autograd}" in text and "--data NAME|PATH" in text


@pytest.mark.parametrize("optimizer, lr", [("adamw", "0.003"), ("sgd", "0.5")])
def test_each_optimizer_trains_the_chapter_model_from_the_cli_and_resumes_exactly(optimizer, lr, tmp_path, capsys):
    from aekit.run.format import load_tensors

    chapter = ["train", "--preset", "chapter", "--data", "digits", "--latent-dim", "8", "--optimizer", optimizer,
               "--lr", lr, "--weight-decay", "1e-4", "--batch-size", "64", "--device", DEVICE, "--no-progress"]
    assert main([*chapter, "--epochs", "20", "--out", str(tmp_path / "full")]) == 0
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["test_sse_per_image"] < metrics["pca_test_sse_per_image"]  # the 784-256-k model beats PCA-k
    assert json.loads((tmp_path / "full" / "config.json").read_text())["train"]["optimizer"] == optimizer
    assert main([*chapter, "--epochs", "8", "--out", str(tmp_path / "part")]) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--epochs", "20", "--no-progress"]) == 0
    full, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    part, _ = load_tensors(tmp_path / "part" / "model.safetensors")
    assert full.keys() == part.keys() and all(np.array_equal(full[k].numpy(), part[k].numpy()) for k in full)


def test_resume_refuses_settings_it_would_drop(run, capsys):
    assert main(["train", "--resume", str(run), "--beta", "3"]) == 2
    one_error_line(capsys, f"--resume continues {run} with its stored settings; only --epochs and --device may "
                           "change (drop --beta)")  # fmt: skip


def test_conv_on_a_table_is_one_clear_error(tmp_path, capsys):
    np.save(tmp_path / "table.npy", np.random.default_rng(0).normal(size=(40, 5)))
    assert exit_code(["train", "--data", str(tmp_path / "table.npy"), "--model", "conv", "--out",
                      str(tmp_path / "run")]) == 2  # fmt: skip
    one_error_line(capsys, "a convolutional body needs image data (C, H, W); this data has shape (5,)")


def test_presets_fill_model_and_training_settings(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("aekit.run.training.train_run", lambda out, m, d, t, **kw: seen.update(m=m, t=t) or ([], {}))
    assert main(["train", "--preset", "conv30", "--epochs", "3", "--out", str(tmp_path / "r")]) == 0
    assert seen["m"].body == aekit.ConvBody(channels=(32, 64)) and seen["m"].latent_dim == 30
    assert seen["t"].schedule == "cosine" and seen["t"].lr == 2e-3 and seen["t"].epochs == 3  # explicit beats preset


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_a_missing_gpu_is_one_clear_error(tmp_path, capsys):
    assert exit_code(["train", "--data", "digits", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")


def test_bad_input_with_overwrite_keeps_the_old_run(run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--data", "fashion", "--out", str(run), "--overwrite"]) == 2
    one_error_line(capsys, "unknown dataset 'fashion'")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_figure_that_does_not_apply_is_one_clear_error(run, capsys):
    assert main(["plot", str(run), "denoising"]) == 2
    one_error_line(capsys, "the denoising figure belongs to the denoising objective; this model is mlp")
    assert main(["plot", str(run), "codebook"]) == 2
    one_error_line(capsys, "the codebook figure belongs to the vq objective; this model is mlp")


@pytest.mark.slow
def test_demo_runs_the_chapter_train_sweep_report_and_announces_each_command(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "2", "--sweep-epochs", "1", "--dims", "2,4", "--limit", "1000",
            "--device", DEVICE, "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    steps = [line for line in printed.splitlines() if line.startswith("[")]
    assert steps == [(f"[1/3] aekit train --preset chapter --out {out} --epochs 2 --limit 1000 --device {DEVICE} "
                      "--no-progress"),
                     f"[2/3] aekit error-vs-dim {out} --epochs 1 --dims 2,4 --no-progress",
                     f"[3/3] aekit report {out}"]  # fmt: skip
    assert len((out / "history.csv").read_text().splitlines()) == 3  # header and 2 epochs
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["latent_dim"] == 32 and config["data"]["limit"] == 1000
    sweep = json.loads((out / "sweep" / "error-vs-dim.json").read_text())
    assert sweep["dims"] == [2, 4] and sweep["epochs"] == 1 and sweep["pca"][0] > sweep["pca"][1]
    assert (out / "figures" / "error-vs-dim.png").is_file() and (out / "figures" / "latent.png").is_file()
    page = (out / "report.html").read_text()
    assert "Test SSE per image against code size" in page and "No error-vs-dim figure yet" not in page


def test_demo_refuses_an_existing_run_without_overwrite(run, capsys):
    before = (run / "model.safetensors").read_bytes()
    assert main(["demo", "--out", str(run), "--no-progress"]) == 2
    one_error_line(capsys, f"{run} already holds a run; pass --overwrite to replace it")
    assert (run / "model.safetensors").read_bytes() == before and not (run / "sweep").exists()


def test_score_per_feature_writes_errors_that_sum_to_the_score(run, tmp_path, capsys):
    out = tmp_path / "explained.csv"
    assert main(["score", str(run), "--input", "digits", "--out", str(out), "--per-feature", "--threshold", "0.01"]) == 0
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["score", "outlier", "e0"] and header[-1] == "e63"
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert table.shape == (359, 66)
    np.testing.assert_allclose(table[:, 2:].sum(1), table[:, 0], rtol=1e-5, atol=1e-9)
    assert "per-feature errors in columns e0..e63" in capsys.readouterr().out


def test_every_option_of_every_command_has_help():
    parser = aekit.faces.parser.build_parser()
    for name, command in parser.subcommands.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"aekit {name} {action.option_strings[0]} has no help"


def test_serve_help_names_every_route_it_serves():
    pytest.importorskip("fastapi")
    from aekit.faces.serve import router

    description = aekit.faces.parser.build_parser().subcommands["serve"].description
    for route in router.routes:
        if route.path.startswith("/v1/") and not route.path.startswith("/v1/explore"):
            assert route.path in description, route.path


def test_export_says_one_line_and_nothing_of_the_exporter(run, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    assert main(["export", str(run), "--part", "score", "--out", str(tmp_path / "s.onnx")]) == 0
    said = capsys.readouterr()
    assert said.out.count("\n") == 1 and said.err == "", said
    assert "torchvision" not in said.err and "Removed" not in said.err


def test_an_image_grid_output_names_png_among_the_suffixes(run, tmp_path, capsys):
    assert main(["sample", str(run), "--out", str(tmp_path / "s.jpg")]) == 2
    one_error_line(capsys, "unsupported output type '.jpg'; use .npy or .csv or .parquet or .png")


def test_reconstruct_draws_a_grid_and_a_folder_that_is_not_a_run_is_said_so(run, tmp_path, capsys):
    assert main(["reconstruct", str(run), "--input", "digits", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "src").mkdir()
    assert exit_code(["evaluate", str(tmp_path / "src")]) == 2
    one_error_line(capsys, "src: not a run directory (no config.json); a run is what aekit train --out writes")


def test_a_grid_of_many_images_shrinks_its_zoom_and_a_huge_one_is_refused(tmp_path):
    import torch
    from PIL import Image

    from aekit.analysis.plots import write_grid

    write_grid(torch.rand(64, 1, 28, 28), tmp_path / "few.png")
    assert Image.open(tmp_path / "few.png").size == ((8 * 29 - 1) * 4,) * 2  # 112 screen pixels a digit, 1 between
    write_grid(torch.rand(10_000, 1, 28, 28), tmp_path / "many.png")
    assert Image.open(tmp_path / "many.png").size == (100 * 29 - 1,) * 2  # each pixel once: 8.4 megapixels, not 135
    with pytest.raises(aekit.DataError, match="4 images make a grid 20000 pixels a side"):
        write_grid(torch.zeros(4, 1, 2, 10_000), tmp_path / "huge.png")


def test_compress_refuses_an_array_suffix_for_its_container(tmp_path, capsys):
    assert exit_code(["compress", "pretrained:codec", "--input", "digits", "--out", str(tmp_path / "t.npy")]) == 2
    one_error_line(capsys, "t.npy: a compressed file is aekit's own container, not a .npy file; name it FILE.aek")
