"""Bengio (2014), Algorithms 2, 4 and 5: supervised and semi-supervised
classification by auto-encoder-mediated target propagation; §5 on
recurrent nets."""
from .conditional import ConditionalNetwork, ConditionalTop
from .recurrent import Section5, Section5Network
from .rule import Bengio2014
from .supervised import Algorithm5, AutoEncoderRecord

__all__ = ["Bengio2014", "Algorithm5", "AutoEncoderRecord", "ConditionalNetwork", "ConditionalTop", "Section5", "Section5Network"]
