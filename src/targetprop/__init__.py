"""targetprop: target propagation for PyTorch (Bengio 2014; Lee et al. 2015;
Meulemans et al. 2020; Ernoult et al. 2022)."""
from .learner import Learner, StepResult
from .networks import InverseAffine, TPLayer, TPNetwork, build_network, parse_arch
from .rules import RULES, BackProp, ForwardLoss, ForwardRecord, Rule, TargetPropagation, make_rule
from .targets import difference_propagate, gradient_top_target, propagate_targets, tp_propagate
from .updates import local_target_loss

__all__ = [
    "Learner", "StepResult", "InverseAffine", "TPLayer", "TPNetwork", "build_network", "parse_arch",
    "RULES", "BackProp", "ForwardLoss", "ForwardRecord", "Rule", "TargetPropagation", "make_rule",
    "difference_propagate", "gradient_top_target", "propagate_targets", "tp_propagate",
    "local_target_loss",
]
__version__ = "0.1.0"
