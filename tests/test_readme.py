"""The README's canonical loop runs as written and learns."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


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
