"""The default thread count and how it is applied."""

import os

import torch

from l2c_explorer import threads


def test_default_is_the_physical_cores_available_or_the_variable(monkeypatch):
    monkeypatch.delenv("L2C_THREADS", raising=False)
    n = threads.default_threads()
    assert 1 <= n <= threads.available_cores() <= (os.cpu_count() or n)
    monkeypatch.setenv("L2C_THREADS", "3")
    assert threads.default_threads() == 3


def test_environment_is_set_without_overriding_the_user(monkeypatch):
    for name in threads.THREAD_VARIABLES + ("OMP_WAIT_POLICY",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    assert threads.configure_environment() >= 1
    assert os.environ["MKL_NUM_THREADS"] == "7" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert threads.configure_environment(2) == 2 and os.environ["MKL_NUM_THREADS"] == "2"


def test_limited_threads_restores_the_setting():
    before = torch.get_num_threads()
    with threads.limited_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads.limited_threads(None) as n:
        assert n == before
