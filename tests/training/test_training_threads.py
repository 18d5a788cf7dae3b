"""`training.cpu_threads`: training runs on the recipe's thread count and gives the process its own back."""

from __future__ import annotations

import copy

import pytest
import torch

from nstage.training.threads import training_threads
from nstage.training.train import train
from tests.training.test_classifier_training import TINY, fake_cases


def test_training_runs_on_the_recipe_threads_and_restores_the_process_count(monkeypatch) -> None:
    import nstage.training.train as train_module

    seen: list[int] = []
    real = train_module._train

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train", spy)
    cfg = copy.deepcopy(TINY)
    cfg["training"].update({"cpu_threads": 1, "epochs": 1})
    cases = fake_cases(6, seed=3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(cases[:4], cases[4:], cfg)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_zero_leaves_torch_default_and_a_negative_count_is_refused() -> None:
    before = torch.get_num_threads()
    with training_threads({"cpu_threads": 0}) as n:
        assert n == before
    with pytest.raises(ValueError, match="cpu_threads"):
        with training_threads({"cpu_threads": -2}):
            pass
