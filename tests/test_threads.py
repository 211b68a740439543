"""The thread count follows the other processes' load: fewer threads beside a busy process, torch's own again
once it is gone, a blip changes nothing, and a count fixed by hand (AEKIT_THREADS, OMP_NUM_THREADS) is kept."""

import pytest
import torch

from aekit.training import threads
from aekit.training.threads import Threads


@pytest.fixture
def governed(monkeypatch):
    monkeypatch.setenv("AEKIT_THREADS", "auto")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield Threads(torch.device("cpu"))
    torch.set_num_threads(before)


def test_threads_give_way_to_a_busy_neighbour_and_come_back(governed):
    assert governed.active and governed.threads == 2
    governed.follow(0.2)  # a little background work: nothing changes
    assert torch.get_num_threads() == 2
    governed.follow(1.0)  # another process keeps a core busy: one thread
    assert governed.threads == torch.get_num_threads() == 1
    governed.follow(1.0)
    governed.follow(0.1)  # it ended: one calm window is not enough ...
    assert torch.get_num_threads() == 1
    governed.follow(0.1)  # ... two are
    assert governed.threads == torch.get_num_threads() == 2
    governed.follow(1.9)  # however busy the others are, one thread stays
    assert torch.get_num_threads() == 1
    governed.close()
    assert torch.get_num_threads() == 2  # torch's count back once training ends


def test_the_load_is_the_machines_busy_time_less_this_processs_own(governed, monkeypatch):
    clock = iter([0.0, 0.0, 1.0, 1.0])  # perf_counter: the window's start (twice), its end (twice)
    busy = iter([100.0, 101.9, 101.9])  # the machine was busy 1.9 s of the second ...
    own = iter([10.0, 10.9, 10.9])  # ... 0.9 s of it this process's: the others kept one core busy
    monkeypatch.setattr(threads.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(threads, "busy_seconds", lambda: next(busy))
    monkeypatch.setattr(threads, "own_seconds", lambda: next(own))
    governed.tick()  # opens the window
    governed.tick()  # within it: nothing read
    governed.tick()  # closes it: others = (1.9 - 0.9) / 1.0 = 1 core
    assert governed.threads == torch.get_num_threads() == 1


@pytest.mark.parametrize("env", [{"AEKIT_THREADS": "torch"}, {"AEKIT_THREADS": "auto", "OMP_NUM_THREADS": "2"}])
def test_a_count_fixed_by_hand_is_kept(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not Threads(torch.device("cpu")).active


def test_aekit_threads_sets_the_count(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("AEKIT_THREADS", "1")
    try:
        assert not Threads(torch.device("cpu")).active and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
