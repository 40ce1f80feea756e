"""Bengio (2014) §2, §4, §7: deep generative stacks of auto-encoders, their
top levels, Algorithms 1 and 2, sampling and inference."""
from .rules import GenerativeBackprop, GenerativeRule, GenerativeTP, StackRecord
from .stacks import GenerativeStack

__all__ = ["GenerativeRule", "GenerativeTP", "GenerativeBackprop", "StackRecord", "GenerativeStack"]
