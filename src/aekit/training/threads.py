"""Torch's thread count on a shared machine: as many threads as the cores other processes leave free.

torch starts one intra-op thread per core, and its OpenMP threads spin while they wait for work. Beside another busy
process that is ruinous for small models: two ``aekit train --preset chapter`` started at once on 2 cores each
took 6-8x the seconds per epoch of one alone (``benchmarks/shared_machine.py``), while one thread each keeps them
at their 1-thread speed. One thread alone is slower on a quiet machine (1.5-1.8 s against 1.1-1.2 s an epoch
there), so the count follows the machine: every :data:`WINDOW_SECONDS` the training loop asks :class:`Threads` to look at how much CPU the
other processes used in that window (the machine's busy time from ``/proc/stat`` less this process's own), and it
uses the cores they left (at least one, at most torch's own count), with some hysteresis so that a brief blip
changes nothing.

A thread count changes the last bits of some sums, so a run whose count changed is not bit for bit the run a quiet
machine gives (as a run on another machine is not). ``AEKIT_THREADS=N`` fixes the count at N (``torch``: torch's own
count), and so does ``OMP_NUM_THREADS`` set by hand: then nothing here changes anything. Only on Linux (elsewhere
there is no ``/proc/stat`` to read, and nothing changes).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

WINDOW_SECONDS = 0.5  # how often the load is looked at (a look reads two small files: about 50 us)
TAKE_BACK = 0.35  # the others' share of a core under which a core given up is taken back (for two windows)
GIVE_UP = 0.6  # the others' share of a core above which one is given up
STAT = Path("/proc/stat")


def busy_seconds() -> float | None:
    """Seconds every CPU of the machine has spent busy (not idle, not waiting for I/O) since boot, or None."""
    try:
        fields = STAT.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """Seconds of CPU this process has used (all its threads)."""
    return time.process_time()


class Threads:
    """Call :meth:`tick` after every training step; the thread count follows the other processes' load."""

    def __init__(self, device: torch.device):
        self.most = torch.get_num_threads()
        setting = os.environ.get("AEKIT_THREADS", "auto")
        fixed = setting != "auto" or "OMP_NUM_THREADS" in os.environ
        if setting.isdigit() and int(setting) >= 1:
            torch.set_num_threads(int(setting))
        self.active = not fixed and device.type == "cpu" and self.most > 1 and busy_seconds() is not None
        self.threads, self.calm = self.most, 0
        self.began = self.mark = None

    def tick(self) -> None:
        if not self.active:
            return
        now = time.perf_counter()
        if self.mark is None or now - self.mark[0] < WINDOW_SECONDS:
            self.mark = self.mark or (now, busy_seconds(), own_seconds())
            return
        wall, busy, own = now - self.mark[0], busy_seconds() - self.mark[1], own_seconds() - self.mark[2]
        self.mark = (now, busy_seconds(), own_seconds())
        others = max(0.0, busy - own) / wall  # cores the other processes kept busy in the window
        self.follow(others)

    def follow(self, others: float) -> None:
        """Use the cores ``others`` (cores' worth of other processes' work) leaves, with hysteresis."""
        free = max(1, min(self.most, int(self.most - others + GIVE_UP)))  # a core given up past GIVE_UP of one
        if free < self.threads:
            self.calm = 0
            self.set(free, others)
        elif free > self.threads and self.most - others >= self.threads + 1 - TAKE_BACK:
            self.calm += 1
            if self.calm >= 2:
                self.calm = 0
                self.set(self.threads + 1, others)
        else:
            self.calm = 0

    def set(self, threads: int, others: float) -> None:
        log.info("other processes use %.1f of the %d cores: training on %d thread%s (AEKIT_THREADS=N fixes it)",
                 others, self.most, threads, "" if threads == 1 else "s")  # fmt: skip
        self.threads = threads
        torch.set_num_threads(threads)

    def close(self) -> None:
        """Give torch back its own count (a notebook trains again, or scores, after this)."""
        if self.active and self.threads != self.most:
            torch.set_num_threads(self.most)
