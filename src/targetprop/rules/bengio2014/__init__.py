"""Bengio (2014), Algorithms 2, 4 and 5: supervised and semi-supervised
classification by auto-encoder-mediated target propagation."""
from .conditional import ConditionalNetwork, ConditionalTop
from .rule import AutoEncoderRecord, Bengio2014

__all__ = ["Bengio2014", "AutoEncoderRecord", "ConditionalNetwork", "ConditionalTop"]
