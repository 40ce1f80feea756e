"""Models written as a user would, in plain PyTorch, for the tests of
``wrap`` and ``--arch FILE.py:FUNCTION`` (this file is such a FILE)."""
import math

from torch import nn

from targetprop.models import Residual


def norm_conv(input_shape, num_classes):
    """Conv–BatchNorm–ReLU–MaxPool twice (odd sizes floor), Linear–ReLU, a read-out."""
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(6 * (height // 4) * (width // 4), 12), nn.ReLU(),
        nn.Linear(12, num_classes))


def norm_mlp(input_shape, num_classes):
    """Linear–ReLU–BatchNorm1d (the norm after the activation) and LayerNorm blocks."""
    features = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.BatchNorm1d(16),
        nn.Linear(16, 16), nn.LayerNorm(16), nn.Tanh(), nn.Dropout(0.1),
        nn.Linear(16, num_classes))


def residual_mlp(input_shape, num_classes):
    """Vector residual blocks h + F(h), each followed by its activation."""
    features = input_shape[-1]
    body = lambda: nn.Sequential(nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 16))  # noqa: E731
    return nn.Sequential(nn.Linear(features, 16), nn.ELU(), Residual(body()), nn.ELU(), Residual(body()), nn.ELU(),
                         nn.Linear(16, num_classes))


def eight_features(input_shape, num_classes):
    """A model that reads 8 features whatever the data."""
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, num_classes))


def not_a_module(input_shape, num_classes):
    return "a string"


def fails(input_shape, num_classes):
    return helper_that_fails(input_shape)


def helper_that_fails(shape):
    raise RuntimeError(f"the user's own bug for {shape}")
