"""The training step's two speed options, each against the plain float32
eager step as the reference: ``precision=bf16`` (autocast) and
``compile=true`` (``torch.compile`` of the rule's part of the step) and
``compile="feedback"`` (of its feedback objective alone)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo.utils
import torch._inductor.config

from targetprop.core.learner import Learner
from targetprop.registry import build_network, make_rule
from targetprop.running.config import ConfigError
from targetprop.running.setup import validate_config

from targetprop.running.trainer import Trainer

from helpers import quick_config


def _learners(rule_name: str, arch: str = "mlp:32x3", in_shape=20, **options):
    """Two learners on identical copies of one network, plain SGD (its step
    is the gradient, so the two updates can be compared directly): the
    reference and one with ``options``."""
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    net = build_network(arch, in_shape, 4, rule)
    pair = []
    for kwargs in ({}, options):
        copy_ = copy.deepcopy(net)
        feedback = torch.optim.SGD(copy_.feedback_parameters(), 0.1) if rule.uses_feedback else None
        pair.append(Learner(copy_, rule, torch.optim.SGD(copy_.forward_parameters(), 0.1), feedback,
                            1 if feedback else 0, **kwargs))
    return pair


def _update(learner: Learner, x, y) -> torch.Tensor:
    before = torch.cat([p.detach().flatten().clone() for p in learner.net.parameters()])
    torch.manual_seed(1)  # the same feedback noise in both learners
    learner.train_step(x, y)
    return torch.cat([p.detach().flatten() for p in learner.net.parameters()]) - before


def _batch(in_shape=20, n=64):
    generator = torch.Generator().manual_seed(2)
    shape = (in_shape,) if isinstance(in_shape, int) else in_shape
    x = torch.randn(n, *shape, generator=generator).flatten(1)
    return x, torch.randint(0, 4, (n,), generator=generator)


@pytest.mark.parametrize("rule", ["bp", "dtp", "ldrl"])
def test_bf16_step_runs_in_bf16_and_follows_the_float32_step(rule):
    reference, bf16 = _learners(rule, precision=torch.bfloat16)
    x, y = _batch()
    record, _, _ = bf16._losses(x, y, True)
    assert record.hs[1].dtype == torch.bfloat16  # the layers' products really ran in bfloat16
    assert all(p.dtype == torch.float32 for p in bf16.net.parameters())
    full, low = _update(reference, x, y), _update(bf16, x, y)
    cosine = torch.nn.functional.cosine_similarity(full, low, dim=0)
    assert cosine > 0.98, f"bf16 update at cosine {cosine:.4f} to the float32 one"
    assert not torch.equal(full, low)  # a different computation, not the same one twice


@pytest.mark.slow
@pytest.mark.parametrize("rule, arch, in_shape, mode", [("bp", "mlp:32x3", 20, True), ("dtp", "mlp:32x3", 20, True),
                                                        ("dtp", "cnn:4-8", (1, 8, 8), True),
                                                        ("dtp", "mlp:32x3", 20, "feedback"),
                                                        ("ldrl", "mlp:32x3", 20, "feedback")])
def test_compiled_step_equals_the_eager_step(rule, arch, in_shape, mode):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch._inductor.config.patch(fallback_random=True):  # eager's random numbers, scoped to this test
        reference, compiled = _learners(rule, arch, in_shape, compile=mode)
        x, y = _batch(in_shape)
        for _ in range(2):
            full, fused = _update(reference, x, y), _update(compiled, x, y)
            torch.testing.assert_close(fused, full, rtol=1e-4, atol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did compile something


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match="compile must be one of"):
        _learners("dtp", compile="everything")


def test_bf16_needs_float32():
    with pytest.raises(ConfigError, match="dtype=float32"):
        validate_config(quick_config(precision="bf16", dtype="float64"))


@pytest.mark.parametrize("rule", ["bp", "dtp"])
def test_a_bf16_run_learns_as_the_float32_run(tmp_path, rule):
    accuracy = {precision: Trainer(quick_config(rule=rule, precision=precision, epochs=2),
                                   tmp_path / precision).run()["test_accuracy"]
                for precision in ("float32", "bf16")}
    assert accuracy["bf16"] > accuracy["float32"] - 0.03, accuracy
