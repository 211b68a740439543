import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# `make test` (and CI) runs the property tests derandomized, with no example database, so that every clean
# clone runs the same examples; `make fuzz` selects the "fuzz" profile: many random examples.
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=20_000, derandomize=False, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("AEKIT_HYPOTHESIS_PROFILE", "ci"))

# The tests compare runs bit for bit, so the thread count must not follow the machine's load while they run (a
# server or a browser started by a test is load): torch's own count, fixed. tests/test_threads.py tests the rule.
os.environ.setdefault("AEKIT_THREADS", "torch")

import aekit
import aekit.data.datasets


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device of the tests that train: cpu (default) or cuda")


def pytest_configure(config):
    # read by the test modules as DEVICE (the torchrun test keeps the CPU: 2 NCCL ranks need 2 GPUs)
    os.environ["AEKIT_TEST_DEVICE"] = config.getoption("--device")


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits as aekit Data: small enough to train on in a second."""
    return aekit.data.datasets.load(aekit.DataConfig(name="digits"))


@pytest.fixture
def low_rank(tmp_path):
    """A (400, 20) table of rank 3 plus a little noise, saved as .npy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)) @ rng.normal(size=(3, 20)) + 0.01 * rng.normal(size=(400, 20))
    path = tmp_path / "low_rank.npy"
    np.save(path, x.astype(np.float32))
    return path
