"""Progress as users see it: bars on a terminal (driven through a pseudo-terminal), plain lines in a file, a word
before each long call, and no tqdm.auto at import (its notebook warning)."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

from aekit import progress

# The calls that take long enough to need a word first (an end-of-training analysis, a figure, a prior's samples):
# the test wraps each so that it writes a marker on the terminal as it starts and ends, and checks that a line or a
# bar came between the end of the last one (or the start) and each start. Nothing here is timed: a slower machine
# passes or fails it alike.
LONG_CALLS = ["aekit.run.training:evaluate_model", "aekit.run.training:cached", "aekit.run.runs:codec_metrics",
              "aekit.generation.wing:generation_metrics", "aekit.analysis.wing:Analysis.draw"]  # fmt: skip
MARK = "\x1e"  # ASCII's record separator: passes a terminal untouched and never appears in aekit's output
INSTRUMENTED = f"""
import functools, importlib, sys
def marked(name, call):
    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        sys.stderr.write("{MARK}call " + name + "{MARK}"); sys.stderr.flush()
        try:
            return call(*args, **kwargs)
        finally:
            sys.stderr.write("{MARK}done{MARK}"); sys.stderr.flush()
    return wrapped
for target in {LONG_CALLS!r}:
    module, path = target.split(":")
    owner, *rest = path.split(".")
    holder = importlib.import_module(module)
    if rest:
        holder, owner = getattr(holder, owner), rest[0]
    setattr(holder, owner, marked(path, getattr(holder, owner)))
from aekit.faces.cli import main
sys.exit(main(sys.argv[1:]))
"""


def on_a_terminal(argv: list[str], cwd) -> str:
    """Run ``aekit ARGV`` with a pseudo-terminal as its stdout and stderr, its long calls marked: what it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", INSTRUMENTED, *argv], stdout=follower, stderr=follower,
                               cwd=cwd, env=os.environ)  # fmt: skip
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    return text


def unannounced(text: str) -> list[str]:
    """The long calls that started with nothing written since the last one ended (or since the start)."""
    pieces = text.split(MARK)  # text, marker, text, marker, ...
    quiet, written = [], False
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            written = written or bool(piece.strip())
        elif piece.startswith("call "):
            if not written:
                quiet.append(piece[5:])
            written = False
        else:  # done: what comes next must be said again
            written = False
    return quiet


@pytest.mark.parametrize("argv", [
    ["train", "--data", "digits", "--latent-dim", "4", "--hidden", "32", "--epochs", "3", "--out", "run"],
    ["evaluate", "run"],
    ["fit-prior", "run", "--prior", "gmm", "--components", "3"],
    ["report", "run"],
])  # fmt: skip
def test_a_command_on_a_terminal_shows_bars_and_says_what_it_does_before_each_long_call(argv, tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "progress"
    folder.mkdir(exist_ok=True)
    text = on_a_terminal(argv, folder)
    calls = text.count(MARK + "call ")
    assert calls >= {"train": 2, "evaluate": 1, "fit-prior": 1, "report": 4}[argv[0]], text[-1500:]  # they ran
    assert unannounced(text) == [], text[-1500:]
    if argv[0] == "train":
        assert "\r" in text and "step" in text  # a bar per epoch, on a terminal


def test_the_silence_check_catches_a_long_call_said_nothing_of():
    said = f"evaluating{MARK}call a{MARK}{MARK}done{MARK}drawing{MARK}call b{MARK}{MARK}done{MARK}"
    quiet = f"evaluating{MARK}call a{MARK}{MARK}done{MARK}  {MARK}call b{MARK}{MARK}done{MARK}"
    assert unannounced(said) == [] and unannounced(quiet) == ["b"]


def test_a_bar_only_where_it_can_be_seen(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress.wanted(None) is False and progress.wanted(True) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.wanted(None) is True and progress.wanted(False) is False


def test_importing_aekit_loads_no_tqdm():
    script = "import sys, aekit, aekit.run.runs\nassert 'tqdm.auto' not in sys.modules and 'tqdm.notebook' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)
