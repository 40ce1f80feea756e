"""Any ``torch.optim`` optimizer and learning-rate scheduler, chosen by name."""
from __future__ import annotations

import inspect

import torch

__all__ = ["optimizer_names", "scheduler_names", "make_optimizer", "make_scheduler", "check_arguments"]


def _classes(module, base) -> dict[str, type]:
    return {name.lower(): cls for name, cls in vars(module).items()
            if inspect.isclass(cls) and issubclass(cls, base) and cls is not base
            and not name.startswith("_")}


_OPTIMIZERS = _classes(torch.optim, torch.optim.Optimizer)
# Optimizers that need a closure or sparse gradients do not fit the training step.
_OPTIMIZERS.pop("lbfgs", None)
_OPTIMIZERS.pop("sparseadam", None)
_SCHEDULERS = _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
# Schedulers that need other schedulers or a metric cannot be built from a config line.
for _name in ("sequentiallr", "chainedscheduler", "reducelronplateau", "lambdalr",
              "multiplicativelr"):
    _SCHEDULERS.pop(_name, None)


def optimizer_names() -> list[str]:
    return sorted(_OPTIMIZERS)


def scheduler_names() -> list[str]:
    return ["none", *sorted(_SCHEDULERS)]


def check_optimizer(name: str) -> type:
    cls = _OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(optimizer_names())}")
    return cls


def check_scheduler(name: str) -> type | None:
    if name.lower() == "none":
        return None
    cls = _SCHEDULERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(scheduler_names())}")
    return cls


def make_optimizer(name: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """``make_optimizer("adam", params, 1e-3, betas=(0.9, 0.99))``; names are
    torch.optim class names, case-insensitive."""
    cls = check_optimizer(name)
    params = list(params)
    # The fused kernels (Adam, AdamW, SGD, Adagrad) run one op for all tensors instead
    # of several per tensor: on a small MLP that is a third of a training step.
    if "fused" in inspect.signature(cls).parameters and "foreach" not in kwargs:
        kwargs.setdefault("fused", all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                       for p in params))
    return cls(params, lr=lr, **kwargs)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, **kwargs):
    """A per-epoch scheduler from torch.optim.lr_scheduler, or None for "none".
    ``cosineannealinglr`` defaults T_max to the number of epochs."""
    cls = check_scheduler(name)
    if cls is None:
        return None
    if cls is torch.optim.lr_scheduler.CosineAnnealingLR:
        kwargs.setdefault("T_max", max(epochs, 1))
    return cls(optimizer, **kwargs)


def check_arguments(prefix: str, optimizer: str, lr: float, optimizer_args: dict, scheduler: str,
                    scheduler_args: dict, epochs: int) -> None:
    """Build the ``prefix`` optimizer and scheduler once, on a stand-in
    parameter: an argument they do not take, one they need but lack, or a
    value they refuse is a ValueError naming the setting, before any work."""
    optimizer_cls, scheduler_cls = check_optimizer(optimizer), check_scheduler(scheduler)
    try:
        made = make_optimizer(optimizer, [torch.nn.Parameter(torch.zeros(1))], lr, **optimizer_args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"setting '{prefix}_optimizer_args' {optimizer_args}: {_why(error, optimizer_cls)}") from None
    try:
        make_scheduler(scheduler, made, epochs, **scheduler_args)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"setting '{prefix}_scheduler_args' {scheduler_args}: {_why(error, scheduler_cls)}") from None


def _why(error: Exception, cls: type) -> str:
    """torch's complaint, and the arguments ``cls`` takes."""
    taken = [name for name in inspect.signature(cls).parameters if name not in ("params", "optimizer", "self")]
    return f"{cls.__name__}: {error}; it takes {', '.join(taken)}"
