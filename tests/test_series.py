"""Long series: windows, one score per time step, the same through the CLI, Python, HTTP and ONNX; bad input."""

import io

import numpy as np
import pytest
import torch
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.core.series import auto_window, channel_errors, channel_moments, cut, dominant_period, starts, step_scores
from aekit.data.series import is_time_stamp
from aekit.faces.cli import main

PERIOD = 25
FAST = ["--epochs", "8", "--no-progress", "--latent-dim", "6", "--hidden", "64"]


def periodic(steps: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(steps)[:, None]
    phase = np.arange(channels)[None] * 0.7
    clean = np.sin(2 * np.pi * t / PERIOD + phase) + 0.3 * np.sin(4 * np.pi * t / PERIOD)
    return clean + 0.03 * np.random.default_rng(seed).normal(size=(steps, channels))


def write_csv(path, x: np.ndarray) -> str:
    header = ",".join(f"sensor{j}" for j in range(x.shape[1]))
    np.savetxt(path, x, delimiter=",", header=header, comments="", fmt="%.6f")
    return str(path)


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    """A two-channel run trained from a CSV with --series (window from the period), and a test series with a spike."""
    folder = tmp_path_factory.mktemp("series")
    train = write_csv(folder / "train.csv", periodic(1500, 2))
    test = periodic(400, 2, seed=1)
    test[200:206, 1] += 1.5  # a planted anomaly in one channel
    assert main(["train", "--data", train, "--series", "--out", str(folder / "run"), *FAST]) == 0
    return folder / "run", write_csv(folder / "test.csv", test), test


def test_the_window_is_the_series_period_and_windows_cover_every_step():
    x = periodic(2000)
    assert dominant_period(x) == PERIOD and auto_window(x) == PERIOD
    assert auto_window(np.random.default_rng(0).normal(size=(3000, 1))) in range(8, 513)
    at = starts(103, 10, 4)
    assert at[0] == 0 and at[-1] == 93 and np.all(np.diff(at) <= 4)
    windows = cut(np.arange(20.0)[:, None], 5, 3)
    assert windows.shape == (6, 1, 5) and windows[-1, 0, -1] == 19 and windows[1, 0, 0] == 3


def test_a_planted_anomaly_scores_above_every_normal_step(series_run, tmp_path, capsys):
    run_path, test_csv, test = series_run
    run = aekit.load_run(run_path)
    assert run.data_config.series and run.data_config.window == PERIOD and run.space.input_shape == (2, PERIOD)
    assert main(["score", str(run_path), "--input", test_csv, "--out", str(tmp_path / "s.csv"),
                 "--contamination", "0.01", "--per-feature"]) == 0  # fmt: skip
    assert "one per time step" in (out := capsys.readouterr().out) and "columns e0..e1 (sensor0, sensor1)" in out
    table = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert table.shape == (400, 4)  # score, outlier, e0, e1: one row per input row
    scores = table[:, 0]
    planted = np.zeros(400, bool)
    planted[200:206] = True
    assert scores[planted].min() > scores[~planted].max()
    assert table[planted, 1].all()  # above the training part's 1% threshold
    assert (table[planted, 3] > table[planted, 2]).all()  # the channel it was planted in explains it
    as_written = np.loadtxt(test_csv, delimiter=",", skiprows=1)
    np.testing.assert_allclose(run.series.score(as_written), scores, rtol=1e-6)  # (the output's float32 digits)


def test_the_worst_windows_are_the_most_abnormal_each_drawn_in_its_channel_by_name(series_run):
    run_path, _, test = series_run
    series = aekit.load_run(run_path).series
    assert series.names == ("sensor0", "sensor1")  # the CSV's columns
    worst = series.worst(test, k=3)
    start, window, rebuilt, channel = worst[0]
    assert 200 - PERIOD < start <= 205 and channel == 1  # the window over the spike, in the channel it was planted in
    np.testing.assert_array_equal(window, test[start : start + PERIOD].T)
    assert rebuilt.shape == window.shape and all(abs(s - start) >= PERIOD for s, *_ in worst[1:])
    figure = series.draw(series=test)
    titles = [ax.get_title() for ax in figure.axes]
    assert f"steps {start}-{start + PERIOD - 1} (sensor1, the most abnormal)" in titles
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["sensor0", "sensor1"]


def test_a_series_run_encodes_each_window_and_rebuilds_the_series(series_run, tmp_path):
    """encode: the code of the window starting at each step; reconstruct: each step the mean of its value in the
    reconstructions of the windows covering it (checked by brute force), the planted spike left out, the CSV's
    columns named as the input's so that it reads back as a series."""
    run_path, test_csv, test = series_run
    series = aekit.load_run(run_path).series
    assert main(["encode", str(run_path), "--input", test_csv, "--out", str(tmp_path / "z.npy")]) == 0
    codes = np.load(tmp_path / "z.npy")
    assert codes.shape == (400 - PERIOD + 1, 6)
    np.testing.assert_allclose(codes, series.encode(test), rtol=1e-5, atol=1e-5)
    assert main(["reconstruct", str(run_path), "--input", test_csv, "--out", str(tmp_path / "r.csv")]) == 0
    assert open(tmp_path / "r.csv").readline().strip() == "sensor0,sensor1"
    rebuilt = np.loadtxt(tmp_path / "r.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(rebuilt, series.reconstruct(test), rtol=1e-5, atol=1e-5)
    windows = cut(test[:80], PERIOD)
    run = aekit.load_run(run_path)
    each = run.fitted.reconstruct(run.space.to_model(windows)).double().numpy()  # (N, C, W) in the data's units
    total, count = np.zeros((80, 2)), np.zeros(80)
    for n, window in enumerate(each):
        total[n : n + PERIOD] += window.T
        count[n : n + PERIOD] += 1
    np.testing.assert_allclose(series.reconstruct(test[:80]), total / count[:, None], rtol=1e-6, atol=1e-9)
    residual = np.abs(rebuilt - test)[:, 1]
    assert residual[200:206].min() > 3 * np.median(residual)  # the spike is not rebuilt: it is the anomaly
    assert main(["score", str(run_path), "--input", str(tmp_path / "r.csv"), "--out", str(tmp_path / "s.npy")]) == 0


def test_the_cli_python_http_and_onnx_give_the_same_scores(series_run, tmp_path):
    from fastapi.testclient import TestClient
    import onnxruntime

    from aekit.faces.serve import create_app

    from aekit.faces.explorer import MAX_ROWS, MAX_STEPS

    run_path, _, test = series_run
    expected = aekit.load_run(run_path).series.score(test)
    client = TestClient(create_app(run_path, map_points=20))
    served = client.post("/v1/score", json={"inputs": test.tolist()})
    np.testing.assert_allclose(served.json()["scores"], expected, rtol=1e-5, atol=1e-12)
    long = periodic(MAX_ROWS + 1000, 2, seed=3)  # a series is scored whole, past the rows' limit, to MAX_STEPS steps
    served = client.post("/v1/score", json={"inputs": long.tolist()})
    assert served.status_code == 200 and client.get("/v1/info").json()["limits"]["max_steps"] == MAX_STEPS
    np.testing.assert_allclose(served.json()["scores"], aekit.load_run(run_path).series.score(long), rtol=1e-5,
                               atol=1e-12)  # fmt: skip
    too_long = io.BytesIO()
    np.save(too_long, np.zeros((MAX_STEPS + 1, 2)))
    refused = client.post("/v1/score", content=too_long.getvalue(), headers={"content-type": "application/x-npy"})
    assert refused.status_code == 422 and f"of 1 to {MAX_STEPS} rows" in refused.json()["detail"]
    assert main(["export", str(run_path), "--part", "score", "--out", str(tmp_path / "s.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "s.onnx"))
    for steps in (400, PERIOD, 97):  # any length of at least one window
        got = session.run(None, {"x": test[:steps].astype(np.float32)})[0]
        reference = aekit.load_run(run_path).series.score(test[:steps])
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(reference).max()))


@pytest.mark.parametrize("body", ["mlp", "tcn", "gru"])
def test_a_saved_detector_is_a_series_run_with_the_same_scores(body, tmp_path):
    x = periodic(900)[:, 0]  # univariate, (T,)
    test = periodic(300, seed=2)[:, 0]
    test[150:153] = 2.5
    detector = aekit.SeriesOutlierDetector(body=body, max_epochs=6, n_components=4, random_state=0).fit(x)
    assert detector.window_ == PERIOD and detector.decision_scores_.shape == (900,)
    scores = -detector.score_samples(test)
    assert scores.shape == (300,) and scores[150:153].min() > np.delete(scores, range(150, 153)).max()
    labels = detector.predict(test)
    assert set(np.unique(labels)) <= {0, 1} and labels[150:153].all()
    detector.save(tmp_path / "run")
    run = aekit.load_run(tmp_path / "run")
    assert run.data_config.series and run.model_config.body.kind == body
    np.testing.assert_array_equal(run.series.score(test), scores)
    np.save(tmp_path / "test.npy", test)
    assert main(["score", str(tmp_path / "run"), "--input", str(tmp_path / "test.npy"), "--out",
                 str(tmp_path / "s.npy")]) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), scores, rtol=1e-6)


def test_a_steps_score_is_its_most_abnormal_channel_over_the_windows_that_cover_it(series_run):
    run_path, _, test = series_run
    run = aekit.load_run(run_path)
    windows = cut(test, PERIOD)  # (N, C, W), stride 1
    with torch.no_grad():
        x = run.space.to_model(windows, dtype=torch.float64)
        squared = (run.fitted.scorer().model(x) - x).square().mean(2).numpy()  # (N, C): each window's, per channel
    moments = run.rundir.load_series(2)
    train = np.loadtxt(run.data_config.name, delimiter=",", skiprows=1)[:1200]  # the training part (80%)
    np.testing.assert_allclose(moments, channel_moments(channel_errors(run.fitted, train)), rtol=1e-9)
    scored = step_scores(run.fitted, test, moments=moments)
    for step in (0, 7, 210, 399):
        covering = squared[[n for n in range(len(windows)) if 0 <= step - n < PERIOD]].mean(0)  # (C,)
        assert scored["channels"][step] == pytest.approx(covering, rel=1e-9)
        assert scored["score"][step] == pytest.approx(((covering - moments[0]) / moments[1]).max(), rel=1e-9)


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "short.npy", periodic(30)), "fewer than two windows"),
    (lambda p: np.save(p / "gap.npy", np.where(np.arange(600)[:, None] == 77, np.nan, periodic(600))),
     "a gap (missing value) at row 77, channel 0"),
    (lambda p: np.save(p / "flat.npy", np.column_stack([periodic(600)[:, 0], np.ones(600)])),
     "channel 1 is constant over the training part"),
    (lambda p: np.save(p / "many.npy", np.random.default_rng(0).normal(size=(20, 2, 50))),
     "is a collection of series; a long series is (T,) or (T, C)"),
    (lambda p: np.save(p / "wide.npy", np.random.default_rng(0).normal(size=(20, 300))),
     "20 rows of 300 columns: a long series has one row per time step"),
])
def test_bad_series_are_one_line(tmp_path, capsys, make, message):
    make(tmp_path)
    data = next(tmp_path.glob("*.npy"))
    assert exit_code(["train", "--data", str(data), "--series", "--window", "20", "--out", str(tmp_path / "r"),
                      "--no-progress"]) == 2  # fmt: skip
    one_error_line(capsys, message)
    assert not (tmp_path / "r").exists()


def test_bad_input_to_a_series_run_and_to_the_detector(series_run, tmp_path, capsys):
    run_path, _, test = series_run
    np.save(tmp_path / "short.npy", test[:10])
    assert exit_code(["score", str(run_path), "--input", str(tmp_path / "short.npy"), "--out", str(tmp_path / "s.csv")]) == 2
    one_error_line(capsys, "the series has 10 steps, fewer than the window of 25")
    np.save(tmp_path / "one.npy", test[:, :1])
    assert exit_code(["score", str(run_path), "--input", str(tmp_path / "one.npy"), "--out", str(tmp_path / "s.csv")]) == 2
    one_error_line(capsys, "1 channel(s); the model was trained on 2")
    assert exit_code(["train", "--data", "digits", "--series", "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "--series: digits is a dataset of images, not a series")
    assert exit_code(["train", "--data", "digits", "--window", "20", "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "--window 20 applies to a long series: give --series too")
    with pytest.raises(ValueError, match="fewer than two windows of 25"):
        aekit.SeriesOutlierDetector(window=25).fit(periodic(40))
    with pytest.raises(ValueError, match="has missing or infinite values"):
        aekit.SeriesOutlierDetector().fit(np.where(np.arange(500) == 9, np.nan, periodic(500)[:, 0]))
    with pytest.raises(ValueError, match="is a collection of series"):
        aekit.SeriesOutlierDetector().fit(np.zeros((10, 2, 30)))
    with pytest.raises(ValueError, match="window='two' must be 'auto' or an integer"):
        aekit.SeriesOutlierDetector(window="two").fit(periodic(500))


def test_whole_series_of_one_length_are_a_collection_with_the_sequence_bodies(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(64)
    normal = np.sin(2 * np.pi * t / 16 + rng.uniform(0, 6, (300, 1))) + 0.05 * rng.normal(size=(300, 64))
    odd = np.sign(np.sin(2 * np.pi * t / 16 + rng.uniform(0, 6, (20, 1))))  # square waves among sines
    for body in ("tcn", "gru", "mlp"):
        detector = aekit.AutoEncoderOutlierDetector(input_shape=(1, 64), body=body, n_components=4, max_epochs=20,
                                                    random_state=0).fit(normal)  # fmt: skip
        scores = -detector.score_samples(np.vstack([normal[:50], odd]))
        assert np.mean(scores[50:, None] > scores[None, :50]) > 0.9, body  # ROC-AUC of square waves among sines
    with pytest.raises(ValueError):
        aekit.AutoEncoderOutlierDetector(input_shape=(1, 64)).fit([list(range(64)), list(range(50))])


@pytest.mark.parametrize("cell, stamp", [
    ("2026-01-01", True), ("2026-01-01T08:30:00", True), ("2026-01-01 08:30", True), ("2026-01-01T08:30:00+01:00", True),
    ("2026-01-01T08:30:00Z", True), ("20260101", False), ("1.5", False), ("-3", False), ("pump", False), ("", False),
])  # fmt: skip
def test_a_time_stamp_is_an_iso_date_or_time_not_a_number(cell, stamp):
    assert is_time_stamp(cell) is stamp


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_time_stamp_column_is_the_series_index_not_a_channel(suffix, tmp_path, caplog):
    """A sensor log's first column is its time: recognised (an ISO 8601 CSV column, a Parquet date or time type), left
    out of the channels and said so; training and scoring read the file alike. A clock in numbers is warned of."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = periodic(600, 2)
    stamps = [dt.datetime(2026, 1, 1) + dt.timedelta(minutes=i) for i in range(600)]
    path = tmp_path / f"log.{suffix}"
    if suffix == "csv":
        lines = [f"{s.isoformat()},{a:.6f},{b:.6f}" for s, (a, b) in zip(stamps, x)]
        path.write_text("time,flow,heat\n" + "\n".join(lines) + "\n")
    else:
        pq.write_table(pa.table({"time": pa.array(stamps, pa.timestamp("s")), "flow": x[:, 0], "heat": x[:, 1]}), path)
    with caplog.at_level("INFO"):
        assert main(["train", "--data", str(path), "--series", "--window", "25", "--out", str(tmp_path / "run"),
                     *FAST]) == 0  # fmt: skip
    assert "column 'time' holds time stamps: left out of the channels" in caplog.text
    run = aekit.load_run(tmp_path / "run")
    assert run.space.input_shape == (2, 25) and run.series.names == ("flow", "heat")
    assert main(["score", str(tmp_path / "run"), "--input", str(path), "--out", str(tmp_path / "s.npy")]) == 0
    as_read, names = run.series.read(str(path))
    assert names == ("flow", "heat") and np.abs(as_read - x).max() < 1e-6  # the stamps left out, the channels kept
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), run.series.score(as_read), rtol=1e-5)
    clocked = write_csv(tmp_path / "clock.csv", np.column_stack([1.7e9 + 60 * np.arange(600), x]))
    caplog.clear()
    assert main(["train", "--data", clocked, "--series", "--window", "25", "--out", str(tmp_path / "c"), *FAST]) == 0
    assert "channel 'sensor0' rises by 60 at every step, like a clock or a row number" in caplog.text
