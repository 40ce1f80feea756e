"""targetprop: target propagation for PyTorch (Bengio 2014; Lee et al. 2015;
Meulemans et al. 2020; Ernoult et al. 2022; Shibuya et al. 2023; Kao &
Hariharan 2024).

What a researcher imports to use a rule or to write one:

* the registry: ``make_rule``, ``RULES``, ``rule_settings``;
* networks and layers: ``wrap`` (an ``nn.Sequential`` of your own cut into
  blocks, each with a proposed feedback map), ``build_network`` (an
  architecture spec, for a rule), ``Chain`` (any layers under a read-out),
  ``TPNetwork``, ``Layer`` (any pair of modules f, g), ``TPLayer``,
  ``InverseAffine``, ``Residual`` (a skip connection ``wrap`` reads);
* training: ``fit`` (one call: a model or an architecture spec, data, a
  rule → a run directory and its summary), ``load_run`` (a trained run
  reopened: its config, rule and network) and the loop itself, ``Learner``;
* writing a rule: ``Rule``, ``ForwardRecord``, ``ForwardLoss``, ``setting``,
  and the pieces it composes, the propagation rules
  (``difference_propagate``, ...), the feedback objectives
  (``noisy_reconstruction_loss``, ..., ``direct_difference_reconstruction_loss``,
  CCL's ``class_alignment_loss``) and the local update ``local_target_loss``.

Running from settings (``Config``, ``Trainer``) lives in
:mod:`targetprop.running`; ready models (``resnet``) in
:mod:`targetprop.models`.
"""
from .core.direct import direct_difference_reconstruction_loss
from .core.feedback import (FeedbackPath, difference_reconstruction_loss, local_difference_reconstruction_loss,
                            noisy_reconstruction_loss)
from .core.layers import InverseAffine, Layer, TPLayer
from .core.learner import Learner, StepResult
from .core.networks import Chain, TPNetwork
from .core.wrap import wrap
from .core.rule import ForwardLoss, ForwardRecord, Rule
from .core.settings import setting
from .core.targets import (difference_propagate, gradient_top_target, hybrid_target, propagate_targets,
                           tp_propagate)
from .core.updates import local_target_loss
from .models import Residual
from .registry import RULES, build_network, make_rule, rule_settings
from .rules.ccl import class_alignment_loss
from .running.fit import fit
from .running.runs import load_run

__all__ = [
    "make_rule", "RULES", "rule_settings",
    "wrap", "build_network", "Chain", "TPNetwork", "Layer", "TPLayer", "InverseAffine", "Residual",
    "fit", "load_run", "Learner", "StepResult",
    "Rule", "ForwardRecord", "ForwardLoss", "setting",
    "gradient_top_target", "tp_propagate", "difference_propagate", "propagate_targets", "hybrid_target",
    "noisy_reconstruction_loss", "difference_reconstruction_loss", "local_difference_reconstruction_loss",
    "FeedbackPath", "direct_difference_reconstruction_loss", "class_alignment_loss", "local_target_loss",
]
__version__ = "0.1.0"
