"""Progress as users see it: bars on a terminal (driven through a pseudo-terminal), plain lines in a file, nothing
silent for long, and no tqdm.auto at import (its notebook warning)."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from aekit import progress

SILENCE = 5.0  # seconds a command may pass without writing anything on a terminal


def on_a_terminal(argv: list[str], cwd) -> tuple[bytes, float]:
    """Run ``aekit ARGV`` with a pseudo-terminal as its stdout and stderr: what it wrote, and the longest silence
    between two writes (the start included)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a terminal's size: 40 x 100
    process = subprocess.Popen([sys.executable, "-m", "aekit", *argv], stdout=follower, stderr=follower, cwd=cwd,
                               env=os.environ)  # fmt: skip
    os.close(follower)
    out, last, longest = b"", time.monotonic(), 0.0
    while True:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            now = time.monotonic()
            longest, last = max(longest, now - last), now
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0, out.decode(errors="replace")[-2000:]
    return out, max(longest, time.monotonic() - last)


@pytest.mark.parametrize("argv", [
    ["train", "--data", "digits", "--latent-dim", "4", "--hidden", "32", "--epochs", "3", "--out", "run"],
    ["evaluate", "run"],
    ["fit-prior", "run", "--prior", "gmm", "--components", "3"],
    ["report", "run"],
])  # fmt: skip
def test_a_command_on_a_terminal_shows_bars_or_lines_and_is_never_silent_for_long(argv, tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "progress"
    folder.mkdir(exist_ok=True)
    out, silence = on_a_terminal(argv, folder)
    assert silence < SILENCE, (silence, out.decode(errors="replace")[-1500:])
    if argv[0] == "train":
        assert b"\r" in out and b"step" in out  # a bar per epoch, on a terminal


def test_a_bar_only_where_it_can_be_seen(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress.wanted(None) is False and progress.wanted(True) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.wanted(None) is True and progress.wanted(False) is False


def test_importing_aekit_loads_no_tqdm():
    script = "import sys, aekit, aekit.run.runs\nassert 'tqdm.auto' not in sys.modules and 'tqdm.notebook' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)
