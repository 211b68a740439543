"""Mixed tables: numeric and categorical columns with missing cells, from the file to the model and back out."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import main, one_error_line

from aekit.data import datasets as data
from aekit.io.tables import Column
from aekit.model.autoencoder import AutoEncoder
from aekit.model.networks import table_terms
from aekit.model.parts import Imputing
from aekit.run import runs
from aekit.training.mlpgrad import chain_of

MIXED = Path(__file__).parent / "data" / "mixed.csv"  # written by tests/data/make_mixed_table.py
COLUMNS = ["size", "width_cm", "material", "weight_kg", "colour", "price"]
CATEGORIES = {"size": {"small", "medium", "large"}, "material": {"wood", "steel"},
              "colour": {"grey", "blue", "brown", "red"}}  # fmt: skip


def read_rows(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "run"
    assert main(["train", "--data", str(MIXED), "--out", str(out), "--epochs", "60", "--latent-dim", "4",
                 "--no-progress"]) == 0  # fmt: skip
    return out


def test_the_fixture_has_numbers_categories_and_holes():
    header, rows = read_rows(MIXED)
    assert header == COLUMNS and len(rows) == 400
    cells = [cell for row in rows for cell in row]
    assert cells.count("") > 50 and cells.count("NA") > 20


def test_a_mixed_csv_trains_and_config_json_records_the_columns(mixed_run):
    config = json.loads((mixed_run / "config.json").read_text())
    kinds = {c["name"]: (c["kind"], tuple(c["categories"])) for c in config["model"]["columns"]}
    assert kinds == {"size": ("categorical", ("large", "medium", "small")), "width_cm": ("numeric", ()),
                     "material": ("categorical", ("steel", "wood")), "weight_kg": ("numeric", ()),
                     "colour": ("categorical", ("blue", "brown", "grey", "red")), "price": ("numeric", ())}  # fmt: skip
    assert config["model"]["objective"]["kind"] == "impute"  # holes in the data: chosen by itself
    assert config["model"]["input_shape"] == [12]  # 3 numbers + 3 + 2 + 4 one-hot slots


def test_the_model_learns_to_fill_numbers_and_categories_beyond_the_baselines(mixed_run):
    metrics = json.loads((mixed_run / "metrics.json").read_text())
    assert metrics["impute_rmse"] < 0.6 * metrics["impute_rmse_mean_fill"]  # measured 0.41 against 1.02 at 30 epochs
    assert metrics["impute_accuracy"] > metrics["impute_accuracy_mode"] + 0.15
    assert math.isfinite(metrics["test_mse_per_pixel"]) and math.isfinite(metrics["pca_test_mse_per_pixel"])


def test_impute_writes_the_table_back_with_every_observed_cell_as_it_came(mixed_run, tmp_path, capsys):
    out = tmp_path / "filled.csv"
    assert main(["impute", str(mixed_run), "--input", str(MIXED), "--out", str(out)]) == 0
    header, rows = read_rows(out)
    _, given = read_rows(MIXED)
    empty = sum(cell in ("", "NA") for row in given for cell in row)
    assert f"filled {empty} missing cells of {len(given)} rows" in capsys.readouterr().out  # cells, not one-hot slots
    assert header == COLUMNS and len(rows) == len(given)
    for row, original in zip(rows, given):
        for name, cell, before in zip(header, row, original):
            assert cell not in ("", "NA")
            if name in CATEGORIES:
                assert cell in CATEGORIES[name]
                assert before in ("", "NA") or cell == before
            elif before in ("", "NA"):  # the model's float32 fill, written with float32's digits (19.444817)
                assert cell == str(np.float32(cell))
            else:
                assert cell == before  # the very text it had: 9.00 stays 9.00
    assert out.read_text().splitlines()[1:] != MIXED.read_text().splitlines()[1:]  # (the holes were filled)
    assert '"' not in out.read_text()  # no cell needs quotes: none is quoted


def test_reconstruct_writes_csv_and_parquet_in_the_tables_own_columns(mixed_run, tmp_path):
    assert main(["reconstruct", str(mixed_run), "--input", str(MIXED), "--out", str(tmp_path / "r.csv")]) == 0
    header, rows = read_rows(tmp_path / "r.csv")
    assert header == COLUMNS and all(row[0] in CATEGORIES["size"] and row[4] in CATEGORIES["colour"] for row in rows)
    assert all(cell == str(np.float32(cell)) for row in rows for cell in (row[1], row[3], row[5]))  # float32 digits
    assert main(["reconstruct", str(mixed_run), "--input", str(MIXED), "--out", str(tmp_path / "r.parquet")]) == 0
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.schema.names == COLUMNS and set(table.column("material").to_pylist()) <= CATEGORIES["material"]
    assert np.isfinite(table.column("price").to_numpy()).all()


def test_an_unseen_category_or_a_missing_column_is_one_line(mixed_run, tmp_path, capsys):
    header, rows = read_rows(MIXED)
    rows[3][4] = "purple"
    with open(tmp_path / "new.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    assert main(["impute", str(mixed_run), "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "f.csv")]) == 2
    one_error_line(capsys, "new.csv: column 'colour', row 4: category 'purple' was not seen in training (it knows "
                   "['blue', 'brown', 'grey', 'red'])")  # fmt: skip
    with open(tmp_path / "short.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([row[:5] for row in [header, *rows]])
    assert main(["score", str(mixed_run), "--input", str(tmp_path / "short.csv"), "--out", str(tmp_path / "s.csv")]) == 2
    one_error_line(capsys, "short.csv: lacks the column(s) ['price'] the model was trained on")
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "s.csv").exists()


def test_holes_with_another_objective_or_for_a_model_without_them_are_one_line(tmp_path, capsys, digits):
    assert main(["train", "--data", str(MIXED), "--out", str(tmp_path / "vae"), "--model", "vae"]) == 2
    one_error_line(capsys, "mixed.csv has missing cells (empty, NA or NaN); only --objective impute trains on them")
    assert not (tmp_path / "vae").exists()
    x = np.random.default_rng(0).random((40, 5))
    np.save(tmp_path / "full.npy", x)
    assert main(["train", "--data", str(tmp_path / "full.npy"), "--out", str(tmp_path / "plain"), "--epochs", "1",
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    x[2, 1] = np.nan
    np.save(tmp_path / "holes.npy", x)
    assert main(["reconstruct", str(tmp_path / "plain"), "--input", str(tmp_path / "holes.npy"),
                 "--out", str(tmp_path / "r.npy")]) == 2  # fmt: skip
    one_error_line(capsys, "holes.npy: contains NaN or infinite values (first in row 2)")  # read by chunks
    np.savetxt(tmp_path / "holes.csv", x, delimiter=",")
    assert main(["score", str(tmp_path / "plain"), "--input", str(tmp_path / "holes.csv"),
                 "--out", str(tmp_path / "s.csv")]) == 2  # fmt: skip
    one_error_line(capsys, "holes.csv: has missing cells (NaN, first in row ", "was trained without them")
    assert main(["impute", str(tmp_path / "plain"), "--input", str(tmp_path / "holes.npy"),
                 "--out", str(tmp_path / "f.npy")]) == 2  # fmt: skip
    one_error_line(capsys, "was not trained to fill missing cells; train it with --objective impute")


def test_a_parquet_table_with_string_and_dictionary_columns_trains_and_resumes_exactly(tmp_path):
    rng = np.random.default_rng(1)
    kind = rng.choice(["a", "b", "c"], 300)
    value = np.where(kind == "a", 1.0, np.where(kind == "b", 5.0, 9.0)) + rng.normal(0, 0.3, 300)
    table = pa.table({"kind": pa.array(kind).dictionary_encode(), "value": value,
                      "flag": pa.array(rng.choice(["yes", "no"], 300))})  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    args = ["train", "--data", str(tmp_path / "t.parquet"), "--latent-dim", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "whole"), "--epochs", "4"]) == 0
    assert main([*args, "--out", str(tmp_path / "half"), "--epochs", "2"]) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--epochs", "4", "--no-progress"]) == 0
    whole, half = runs.load_run(tmp_path / "whole"), runs.load_run(tmp_path / "half")
    assert whole.model_config.columns[0] == Column("kind", "categorical", ("a", "b", "c"))
    assert type(whole.model_config.objective).__name__ == "Plain"  # no holes: the objective stays plain
    assert chain_of(whole.model) is None  # softmax heads: autograd, not the hand-derived MSE gradients
    for a, b in zip(whole.model.state_dict().values(), half.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_loss_is_cross_entropy_per_categorical_column_and_skips_missing_cells():
    logits = torch.randn(6, 5)
    target = torch.zeros(6, 5)
    target[:, 0] = torch.randn(6)
    classes = torch.tensor([0, 1, 2, 0, 1, 2])
    target[torch.arange(6), 1 + classes] = 1
    target[:, 4] = torch.randn(6)
    each, weight = table_terms(logits, target, [(1, 4)])
    assert torch.allclose(each[:, 1], F.cross_entropy(logits[:, 1:4], classes, reduction="none"))
    assert torch.equal(weight, torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]))  # three columns, one term each
    columns = (Column("x"), Column("c", "categorical", ("p", "q", "r")), Column("y"))
    model = AutoEncoder((5,), 2, output="linear", columns=columns, objective=Imputing(noise_level=0.0))
    holes = target.clone()
    holes[0, 1:4] = torch.nan  # a missing category
    holes[1, 4] = torch.nan
    loss, _ = model.loss(holes)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    probabilities = model.decode(torch.randn(3, 2))[:, 1:4]
    assert torch.allclose(probabilities.sum(1), torch.ones(3))  # a softmax head


def test_inpainting_fills_erased_pixels_of_digits(tmp_path, digits, capsys):
    images = np.concatenate([digits.x_train.numpy(), digits.x_test.numpy()])  # (1797, 1, 8, 8) in [0, 1]
    erased = images.copy()
    erased[:, :, 2:6, 4:8] = np.nan  # the right half of the middle rows of every image
    erased[::2] = images[::2]  # half the images whole: the model sees every pixel somewhere
    np.save(tmp_path / "erased.npy", erased)
    assert main(["train", "--data", str(tmp_path / "erased.npy"), "--out", str(tmp_path / "run"), "--epochs", "40",
                 "--latent-dim", "16", "--no-progress"]) == 0  # fmt: skip
    assert main(["impute", str(tmp_path / "run"), "--input", str(tmp_path / "erased.npy"),
                 "--out", str(tmp_path / "filled.npy")]) == 0  # fmt: skip
    filled = np.load(tmp_path / "filled.npy").reshape(erased.shape)
    holes = np.isnan(erased)
    assert np.array_equal(filled[~holes], erased[~holes].astype(np.float32))
    assert ((filled >= 0) & (filled <= 1)).all()
    error = np.sqrt(((filled - images)[holes] ** 2).mean())
    mean_fill = np.sqrt(((np.nanmean(erased, axis=0, keepdims=True) - images) ** 2)[holes].mean())
    assert error < 0.85 * mean_fill, (error, mean_fill)  # measured 0.79x (KNNImputer: 0.58x; see the README)
    assert main(["impute", str(tmp_path / "run"), "--input", str(tmp_path / "erased.npy"),
                 "--out", str(tmp_path / "filled.png")]) == 0  # fmt: skip
    assert (tmp_path / "filled.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_of_the_previous_format_still_loads_without_columns():
    run = runs.load_run(Path(__file__).parent / "data" / "v1-mlp")
    assert run.model_config.columns == () and not run.space.missing and run.model.blocks == []
    assert data.read_data(MIXED)[2][0].name == "size"


def write_csv(path, rows, header="a,b,c,d"):
    path.write_text(header + "\n" + "\n".join(",".join(cells) for cells in rows) + "\n")
    return path


def test_a_hole_only_in_the_test_rows_trains_and_imputes_every_row(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(41, 4))
    rows = [[f"{v:.4f}" for v in row] for row in x]
    rows[27][1] = "nan"  # row 27 is held out for testing (split seed 0): the training rows have no hole
    table = write_csv(tmp_path / "t.csv", rows)
    assert main(["train", "--data", str(table), "--out", str(tmp_path / "run"), "--epochs", "3", "--no-progress"]) == 0
    run = runs.load_run(tmp_path / "run")
    assert not torch.isnan(run.data().x_train).any() and torch.isnan(run.data().x_test).any()
    assert type(run.model_config.objective) is Imputing and run.metrics()["pca_mean_filled"] == 1.0
    assert main(["impute", str(tmp_path / "run"), "--input", str(table), "--out", str(tmp_path / "f.csv")]) == 0
    header, filled = read_rows(tmp_path / "f.csv")
    assert header == ["a", "b", "c", "d"] and len(filled) == 41
    assert all(cell.lower() not in ("", "nan") for row in filled for cell in row)


@pytest.mark.parametrize("n_rows", [2, 5, 10])
def test_tables_of_a_few_rows_train_and_say_which_analyses_they_skip(tmp_path, caplog, n_rows):
    rows = [[f"{v:.3f}" for v in row] for row in np.random.default_rng(n_rows).normal(size=(n_rows, 3))]
    table = write_csv(tmp_path / "t.csv", rows, "a,b,c")
    with caplog.at_level("INFO", logger="aekit"):
        assert main(["train", "--data", str(table), "--out", str(tmp_path / "run"), "--epochs", "2",
                     "--no-progress"]) == 0  # fmt: skip
    assert "the holes measure and the probes skipped: they need at least 20 test rows" in caplog.text
    metrics = runs.load_run(tmp_path / "run").metrics()
    assert "holes" not in metrics and np.isfinite(metrics["test_mse_per_pixel"])
    assert main(["evaluate", str(tmp_path / "run")]) == 0


def test_a_table_gets_a_code_narrower_than_its_width_unless_one_is_given(tmp_path, caplog):
    rows = [[f"{v:.3f}" for v in row] for row in np.random.default_rng(0).normal(size=(60, 6))]
    table = write_csv(tmp_path / "t.csv", rows, "a,b,c,d,e,f")
    with caplog.at_level("INFO", logger="aekit"):
        assert main(["train", "--data", str(table), "--out", str(tmp_path / "auto"), "--epochs", "1",
                     "--no-progress"]) == 0  # fmt: skip
    assert "the default code (32) is not narrower than the data's 6 features: training with --latent-dim 3" in caplog.text
    assert runs.load_run(tmp_path / "auto").model_config.latent_dim == 3
    assert runs.load_run(tmp_path / "auto").metrics()["pca_components"] == 3
    assert main(["train", "--data", str(table), "--out", str(tmp_path / "given"), "--epochs", "1", "--latent-dim", "8",
                 "--no-progress"]) == 0  # fmt: skip
    assert runs.load_run(tmp_path / "given").model_config.latent_dim == 8  # given: kept (and warned)


def test_a_file_with_holes_trains_with_the_imputers_defaults_unless_given(tmp_path):
    from aekit.model.config import FILLING_EPOCHS, FILLING_HIDDEN, filling_code

    x = np.random.default_rng(0).random((30, 10))
    x[np.random.default_rng(1).random(x.shape) < 0.2] = np.nan
    np.save(tmp_path / "holes.npy", x)
    assert main(["train", "--data", str(tmp_path / "holes.npy"), "--out", str(tmp_path / "auto"), "--no-progress"]) == 0
    run = runs.load_run(tmp_path / "auto")
    assert run.model_config.latent_dim == filling_code(10) == 5 and run.model_config.body.hidden == FILLING_HIDDEN
    assert run.train_config.epochs == FILLING_EPOCHS == len(run.history())
    assert main(["train", "--data", str(tmp_path / "holes.npy"), "--out", str(tmp_path / "given"), "--epochs", "2",
                 "--hidden", "16", "--no-progress"]) == 0  # fmt: skip
    given = runs.load_run(tmp_path / "given")
    assert (given.model_config.body.hidden, given.train_config.epochs, given.model_config.latent_dim) == ((16,), 2, 5)


def test_a_parquet_text_label_gives_the_classes_a_csv_gives(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table({"a": rng.normal(size=60), "b": rng.normal(size=60), "label": rng.choice(["x", "y", "z"], 60)})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=16)  # classes numbered over the whole column
    table.to_pandas().to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.parquet", "t.csv"):
        assert main(["train", "--data", str(tmp_path / name), "--label-column", "label", "--out",
                     str(tmp_path / name.replace(".", "_")), "--epochs", "1", "--no-progress"]) == 0  # fmt: skip
    a, b = runs.load_run(tmp_path / "t_parquet").data(), runs.load_run(tmp_path / "t_csv").data()
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.y_test, b.y_test)
    assert sorted(set(a.y_train.tolist()) | set(a.y_test.tolist())) == [0, 1, 2]


def test_a_column_with_no_observed_value_is_refused_and_an_identifier_column_warned_of(tmp_path, capsys, caplog):
    rng = np.random.default_rng(0)
    rows = [[f"{v:.3f}", "", f"id{i:04d}", f"{w:.3f}"] for i, (v, w) in enumerate(rng.normal(size=(60, 2)))]
    table = write_csv(tmp_path / "t.csv", rows, "a,empty,code,b")
    assert main(["train", "--data", str(table), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 2
    one_error_line(capsys, "t.csv: column 'empty' has no observed value in the 48 training rows (every cell empty); drop it")
    np.save(tmp_path / "x.npy", np.column_stack([rng.normal(size=50), np.full(50, np.nan)]))
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r2"), "--no-progress"]) == 2
    one_error_line(capsys, "x.npy: feature 1 has no observed value in the 40 training rows")
    rows = [[r[0], r[2], r[3]] for r in rows]
    table = write_csv(tmp_path / "ids.csv", rows, "a,code,b")
    with caplog.at_level("WARNING", logger="aekit"):
        assert main(["train", "--data", str(table), "--out", str(tmp_path / "r3"), "--epochs", "1",
                     "--no-progress"]) == 0  # fmt: skip
    assert "column 'code' has 60 distinct values in 60 rows, mostly unique like an identifier's" in caplog.text


def test_the_http_api_takes_a_tables_own_columns_as_aekit_score_does(mixed_run, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from aekit.faces.serve import create_app

    path = mixed_run
    with open(MIXED, newline="") as handle:
        records = list(csv.DictReader(handle))[:6]
    records = [{k: (None if v in ("", "NA") else v) for k, v in row.items()} for row in records]
    subset = tmp_path / "six.csv"
    with open(subset, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in records])
    assert main(["score", str(path), "--input", str(subset), "--out", str(tmp_path / "s.csv")]) == 0
    expected = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    client = TestClient(create_app(path, map_points=20))
    as_records = client.post("/v1/score", json={"inputs": records})
    names = list(records[0])
    as_lists = client.post("/v1/score", json={"inputs": [[row[n] for n in names] for row in records]})
    for answer in (as_records, as_lists):
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["scores"], expected, rtol=1e-5)
    codes = client.post("/v1/encode", json={"inputs": [{**row, "note": "ignored"} for row in records]})
    assert codes.status_code == 200 and len(codes.json()["codes"]) == 6  # other keys (a label) are left out
    filled = client.post("/v1/impute", json={"inputs": records}).json()["outputs"]
    for row, out in zip(records, filled):  # every given value as it was, every hole filled in its own kind
        assert all(out[j] is not None for j in range(len(names)))
        assert all(out[j] == (float(v) if isinstance(out[j], float) else v) for j, v in enumerate(row.values())
                   if v is not None)  # fmt: skip
    unseen = client.post("/v1/score", json={"inputs": [{**records[0], "size": "enormous"}]})
    assert unseen.status_code == 422 and "enormous" in unseen.json()["detail"]
    # the body read once as JSON serves the encoded rows' path too: numbers as wide as the model's input, or errors
    space = runs.load_run(path).space
    whole = [i for i, row in enumerate(records) if None not in row.values()]
    encoded = client.post("/v1/score", json={"inputs": space.table_rows([records[i] for i in whole]).tolist()})
    assert encoded.status_code == 200 and whole, encoded.text
    np.testing.assert_allclose(encoded.json()["scores"], expected[whole], rtol=1e-5)
    narrow = client.post("/v1/score", json={"inputs": [[0.5, 1.5]]})
    assert narrow.status_code == 422 and narrow.json()["detail"] == (f"inputs: each row must have {space.width} "
                                                                      "values (the model's width); got 2")  # fmt: skip
    broken = client.post("/v1/score", content=b'{"inputs": [[1, 2', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["detail"], broken.text


def test_the_label_column_is_optional_when_scoring_new_rows(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"{v:.3f}" for v in row] + [str(rng.integers(0, 3))] for row in rng.normal(size=(60, 3))]
    table = write_csv(tmp_path / "t.csv", rows, "a,b,c,kind")
    write_csv(tmp_path / "new.csv", [row[:3] for row in rows], "a,b,c")
    assert main(["train", "--data", str(table), "--label-column", "kind", "--out", str(tmp_path / "run"),
                 "--epochs", "2", "--no-progress"]) == 0  # fmt: skip
    for name in ("t.csv", "new.csv"):
        assert main(["score", str(tmp_path / "run"), "--input", str(tmp_path / name), "--out",
                     str(tmp_path / f"{name}.npy")]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "t.csv.npy"), np.load(tmp_path / "new.csv.npy"))
