"""Ordinary PyTorch models: the residual block that ``targetprop.wrap``
recognises and the presets built from it (``--arch resnet20``). Nothing here
knows target propagation; copy a model and edit it as you would any other.
"""
from .blocks import Residual
from .resnet import resnet, resnet_depths

__all__ = ["Residual", "resnet", "resnet_depths"]
