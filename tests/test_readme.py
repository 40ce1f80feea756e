"""The code blocks of the README and the documentation run as written: the
canonical loop learns, the own-model block trains the model, the recipe of a
new rule registers and trains."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
CONTRIBUTING = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


@pytest.mark.slow
def test_readme_training_loop_runs_and_learns():
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    torch.manual_seed(0)
    x = torch.randn(256, 784)
    y = (x[:, :10].argmax(1))  # a learnable labelling of 10 classes
    loader = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)] * 15
    namespace = {"loader": loader}
    exec(compile(block, str(README), "exec"), namespace)
    net = namespace["net"]
    accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1


def test_new_rule_recipe_registers_trains_and_is_checked():
    """The documentation's "Adding a rule" block: the recipe is registered, its
    settings are checked, and it trains like any rule."""
    from targetprop import RULES, Learner, build_network, make_rule

    block = next(b for b in re.findall(r"```python\n(.*?)```", CONTRIBUTING.read_text(), re.S) if "RULES[" in b)
    saved = dict(RULES)
    try:
        namespace = {}
        exec(compile(block, str(CONTRIBUTING), "exec"), namespace)
        rule = namespace["rule"]
        assert rule.name == "half-dtp" and rule.target_step == 0.2
        with pytest.raises(ValueError, match="does not read setting.*'alpha'"):
            make_rule("half-dtp", alpha=0.5)
        torch.manual_seed(0)
        net = build_network("mlp:16x3", 8, 3)
        learner = Learner(net, rule, torch.optim.Adam(net.forward_parameters(), 1e-2),
                          torch.optim.Adam(net.feedback_parameters(), 1e-2))
        x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
        first = learner.train_step(x, y).output_loss
        for _ in range(30):
            last = learner.train_step(x, y).output_loss
        assert last < first
    finally:
        RULES.clear()
        RULES.update(saved)


@pytest.mark.slow
def test_readme_own_model_block_trains_the_model(tmp_path):
    """The README's "your own network" block, on digits (8×8) for one epoch."""
    pytest.importorskip("sklearn")
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "fit(" in b)
    small = (block.replace('"fashion-mnist"', '"digits"').replace("64 * 7 * 7", "64 * 2 * 2")
             .replace("epochs=10", "epochs=1").replace('"runs/my-conv"', repr(str(tmp_path / "run"))))
    namespace = {}
    exec(compile(small, str(README), "exec"), namespace)
    assert 0 <= namespace["summary"]["test_accuracy"] <= 1 and (tmp_path / "run" / "checkpoint.pt").is_file()
