"""The README's snippets run as written, and the training one writes plain output to a file, not a bar."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_is_a_screen_or_two():
    assert len(README.read_text().splitlines()) <= 200


def test_the_train_run_snippet_writes_no_bar_to_a_file(tmp_path):
    """With its output sent to a file (a job's log), three epochs write at most 20 carriage returns (a bar would
    write hundreds) and the snippet's last lines run."""
    code = snippets()[0] + "\nassert z.shape == (6, 32) and x_hat.shape == (6, 1, 28, 28) and scores.shape == (6,)\n"
    log = tmp_path / "log.txt"
    with open(log, "wb") as handle:
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT,
                       check=True, timeout=600)  # fmt: skip
    assert log.read_bytes().count(b"\r") <= 20
    assert (tmp_path / "runs" / "mine" / "metrics.json").is_file()


def test_the_scikit_learn_snippet_runs(tmp_path):
    code = snippets()[1] + "\nimport os; assert os.path.isfile('runs/detector/score.safetensors')\n" \
        "assert not np.isnan(filled).any() and np.array_equal(filled[~np.isnan(holes)], holes[~np.isnan(holes)])\n"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=600, capture_output=True)
