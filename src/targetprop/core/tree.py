"""Recursive (tree-structured) nets, Bengio 2014 §5: a node's state composes
its children's states and its own input,

    f:  h_n = act(W_L h_left(n) + W_R h_right(n) + U x_n + b),

a missing child contributing 0 (a leaf is act(U x_n + b)), and the learned
inverse of one composition maps a parent back to its children,

    g:  h̃_left(n) = V_L h_n + P_L x_n + c_L,   h̃_right(n) = V_R h_n + P_R x_n + c_R.

The read-out sees the root, logits = R h_root + d. A batch of trees of any
shapes is processed level by level (``TreeNetwork.unrolled``): the nodes at
depth d of every tree form one layer of a chain whose input is the level
below, so every chain rule sees a chain as deep as the deepest tree, and
each level is one product per weight, whatever the trees' shapes. Back-prop
through it is back-propagation through structure (BPTS, Goller and Küchler
1996); the DTP family's targets come down from the root by difference
propagation, ĥ_children = h_children + g(ĥ_n) − g(h_n).

A tree is one example of shape (M, 3 + F): row i a node, row 0 the root,
columns ``LEFT`` and ``RIGHT`` the rows of its children (−1: none; a node
with one child has it on the left), ``DEPTH`` its depth below the root (−1:
a padding row), then its F input features (one-hot tokens, for instance).
A path (every node one child) is the Elman net of :mod:`.recurrent`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ACTIVATIONS, make_activation
from .networks import SharedCellNetwork, detached_pass
from .records import ForwardRecord

Tensor = torch.Tensor

__all__ = ["LEFT", "RIGHT", "DEPTH", "FEATURES", "TreeCell", "TreeLevel", "TreeNetwork", "tree_shape_of"]

LEFT, RIGHT, DEPTH, FEATURES = 0, 1, 2, 3  # the columns of a node's row; its features start at FEATURES


def tree_shape_of(inputs: int | tuple[int, ...]) -> tuple[int, int]:
    """(rows M, columns 3 + F) of a tree's encoding, checked."""
    if isinstance(inputs, int) or len(inputs) != 2 or inputs[1] <= FEATURES:
        raise ValueError(f"a tree net reads trees encoded as (nodes, 3 + features) rows; these inputs are "
                         f"{inputs}: use tree data (--data listops, or a file of bracketed trees, NAME.trees)")
    return int(inputs[0]), int(inputs[1])


class TreeCell(nn.Module):
    """The composition f of every node and its inverse g, shared by all
    nodes. W_L and W_R start orthogonal, each scaled by 1/√2 (two children
    add their variance), and V_L, V_R as their transposes."""

    def __init__(self, features: int, width: int, activation: str = "tanh", feedback_input: bool = True):
        super().__init__()
        self.width = width
        self.children_weight = nn.Linear(width, 2 * width, bias=False)  # [W_L; W_R]
        self.input = nn.Linear(features, width)                          # U, b
        self.back = nn.Linear(width, 2 * width)                          # [V_L; V_R], [c_L; c_R]
        self.back_input = (nn.Linear(features, 2 * width, bias=False)    # [P_L; P_R]
                           if feedback_input else None)
        self.act = make_activation(activation)
        with torch.no_grad():
            for side in self.children_weight.weight.split(width):
                nn.init.orthogonal_(side)
                side.mul_(2 ** -0.5)
            self.back.weight.copy_(torch.cat([w.T for w in self.children_weight.weight.split(width)]))
            nn.init.zeros_(self.back.bias)

    def forward_parameters(self) -> list[nn.Parameter]:
        return [self.children_weight.weight, *self.input.parameters()]

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [*self.back.parameters(), *([] if self.back_input is None else [self.back_input.weight])]

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        """The children's and the input weights: what the angles compare with BPTS's, each on its own."""
        return {"children": [self.children_weight.weight], "input": [self.input.weight]}

    def weights(self) -> list[nn.Parameter]:
        return [self.children_weight.weight, self.input.weight]


class TreeLevel:
    """The nodes at one depth of a batch of trees, as a layer of a chain (the
    protocol of :class:`layers.Layer`): f(h_below) is their states from the
    states of the level below, g(h) the level below's reconstruction. The
    deepest level holds leaves only and has no g.

    ``features``: the nodes' inputs x_n; ``left``, ``right``: each node's
    children as rows of the level below (−1: none); ``slots``: for each row
    of the level below, 2·(its parent's row) + (0 left, 1 right), where g's
    two halves put it."""

    drops_input = False
    time_step = True        # one of a structure's steps, which share every map
    feedback_stacks = True  # g is affine: targets and states may go through it stacked

    def __init__(self, cell: TreeCell, features: Tensor, left: Tensor | None, right: Tensor | None,
                 slots: Tensor | None):
        self.cell, self.features, self.left, self.right, self.slots = cell, features, left, right, slots
        self.first = slots is None
        self.g = None if self.first else self.feedback

    def f(self, h_below: Tensor) -> Tensor:
        drive = self.cell.input(self.features)
        if self.first:
            return self.cell.act(drive)
        both = F.pad(self.cell.children_weight(h_below), (0, 0, 1, 0))  # row 0: a missing child's 0
        width = self.cell.width
        return self.cell.act(drive + both[self.left + 1, :width] + both[self.right + 1, width:])

    __call__ = fixed_forward = f

    def _to_children(self, both: Tensor) -> Tensor:
        """The rows of the level below from g's two halves at each parent,
        (k·N, 2W) for k stacked copies → (k·N_below, W)."""
        rows = len(self.features)
        copies = len(both) // rows
        halves = both.reshape(copies * rows * 2, self.cell.width)
        if copies == 1:
            return halves[self.slots]
        offsets = torch.arange(copies, device=both.device).mul_(2 * rows)
        return halves[(self.slots + offsets[:, None]).flatten()]

    def feedback(self, h: Tensor) -> Tensor:
        """g(h): each child's V_side h_n + P_side x_n + c_side from its parent n."""
        if self.cell.back_input is None:
            return self._to_children(self.cell.back(h))
        copies = len(h) // len(self.features)
        features = self.features if copies == 1 else self.features.repeat(copies, 1)
        return self._to_children(self.cell.back(h) + self.cell.back_input(features))

    def children_of(self, h_below: Tensor) -> Tensor:
        """[h_left; h_right] of every node from the level below's states, (N, 2W): 0 for a missing child."""
        if self.first:
            return h_below.new_zeros(len(self.features), 2 * self.cell.width)
        padded = F.pad(h_below, (0, 0, 1, 0))
        return torch.cat([padded[self.left + 1], padded[self.right + 1]], dim=1)

    def feedback_linear(self, d: Tensor) -> Tensor:
        """V d: g's linear part, which carries target differences (g(ĥ) − g(h) = V(ĥ − h))."""
        return self._to_children(F.linear(d, self.cell.back.weight))

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.cell.forward_parameters()

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [] if self.first else self.cell.feedback_parameters()

    @property
    def activation(self) -> nn.Module:
        return self.cell.act

    def penalty(self, h_below: Tensor) -> None:
        return None

    def weights(self) -> list[nn.Parameter]:
        return self.cell.weights()


class TreeNetwork(SharedCellNetwork):
    """``tree:WIDTH`` on trees encoded as (M, 3 + F) rows (module doc): the
    cell composed up every tree, level by level, and a linear read-out of the
    root. ``layers`` holds the cell alone; ``unrolled(x)`` gives the levels
    of a batch, deepest first, the chain the rules train. Its diagnostics
    report angles to BPTS by depth below the root (``angle_depth_k``)."""

    kind = "tree"
    lag_name = "depth"          # what a step back from the read-out is called, in the diagnostics
    lags = tuple(range(1, 16))  # the depths whose angles the diagnostics report

    def __init__(self, tree_shape: tuple[int, int], width: int, num_outputs: int, activation: str = "tanh",
                 feedback_input: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"tree: units take the activations {', '.join(ACTIVATIONS)}, not {activation!r}")
        self.tree_shape = tree_shape
        self.cell = TreeCell(tree_shape[1] - FEATURES, width, activation, feedback_input)
        self.output = nn.Linear(width, num_outputs)

    def unrolled(self, x: Tensor) -> list[TreeLevel]:
        """The levels of a batch of trees, deepest first, the roots last (one
        row per tree, in batch order): a few tensor operations per level,
        none per node."""
        nodes = x.reshape(len(x), *self.tree_shape).flatten(0, 1)
        depth = nodes[:, DEPTH].round().long()
        rows = self.tree_shape[0]
        base = torch.arange(len(x), device=x.device).repeat_interleave(rows).mul_(rows)
        children = nodes[:, [LEFT, RIGHT]].round().long()
        present = children >= 0
        children = torch.where(present, children + base[:, None], -1)  # children as rows of `nodes`
        ids = [(depth == d).nonzero().squeeze(1) for d in range(int(depth.max()) + 1)]
        if len(ids[0]) != len(x) or not torch.equal(ids[0], base[::rows]):
            raise ValueError("every tree is a root in row 0 (depth 0) and nodes below it: the batch holds "
                             f"{len(ids[0])} roots for {len(x)} trees")
        level_row = torch.full((len(nodes) + 1,), -1, dtype=torch.long, device=x.device)  # index −1: none
        levels = []
        for d in reversed(range(len(ids))):
            mine = ids[d]
            if d == len(ids) - 1:
                levels.append(TreeLevel(self.cell, nodes[mine, FEATURES:], None, None, None))
            else:
                kids = children[mine]
                left, right = level_row[kids[:, 0]], level_row[kids[:, 1]]
                if bool(((left < 0) & (kids[:, 0] >= 0)).any() or ((right < 0) & (kids[:, 1] >= 0)).any()):
                    raise ValueError(f"a node at depth {d} has a child that is not at depth {d + 1}: each "
                                     "node's depth is its parent's plus one")
                parents = torch.arange(len(mine), device=x.device)
                slots = torch.full((len(ids[d + 1]),), -1, dtype=torch.long, device=x.device)
                slots[left[left >= 0]] = 2 * parents[left >= 0]
                slots[right[right >= 0]] = 2 * parents[right >= 0] + 1
                if bool((slots < 0).any()):
                    raise ValueError(f"a node at depth {d + 1} is no child of a node at depth {d}")
                levels.append(TreeLevel(self.cell, nodes[mine, FEATURES:], left, right, slots))
                level_row[ids[d + 1]] = -1
            level_row[mine] = torch.arange(len(mine), device=x.device)
        return levels

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for level in self.unrolled(x):
            h = level.f(h)
        return self.read_out(h)

    def local_pass(self, x: Tensor) -> ForwardRecord:
        """Each level on its detached input; the roots a leaf of their own, the logits from them."""
        return detached_pass(self.unrolled(x), x, self.read_out)

    def read(self, hs) -> Tensor:
        """What the read-out reads of the levels: the roots."""
        return hs[-1]
