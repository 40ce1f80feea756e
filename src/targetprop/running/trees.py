"""Tree data for recursive nets (:mod:`targetprop.core.tree`): generated
nested list operations, and a user's own trees from a file of bracketed
expressions, each encoded as rows of nodes (the encoding the tree net reads).

* ``listops``: binary nested operations over the digits 0–9, each node
  ``MAX`` or ``MIN`` of its two children, every leaf a digit; a tree of
  depth ``tree_depth`` has one child of every node on a path to a leaf at
  that depth and the other a tree of random smaller depth. The label is the
  root's value (10 classes): any leaf may decide it. (A sum mod 10 is left
  out: one composition act(W_L h_L + W_R h_R + U x + b) cannot compute it,
  while max and min are a threshold of the children's thermometer codes.)
* a file ``NAME.trees``: one example per line, ``LABEL TREE``, a tree being a
  token (a leaf) or ``(TOKEN CHILD [CHILD])``, e.g. ``7 (MAX 3 (MIN 7 9))``;
  a first line ``# classes: A B ...`` lists the classes (else they are the
  labels that occur); other lines starting with ``#`` and blank ones are
  skipped. Every token becomes a one-hot input of its node.
"""
from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import numpy as np

from ..core.tree import DEPTH, FEATURES, LEFT, RIGHT

__all__ = ["LISTOPS_TOKENS", "listops", "tree_tokens", "parse_tree", "read_tree_file", "encode_trees", "evaluate_listops"]

LISTOPS_OPERATIONS = ("MAX", "MIN")
LISTOPS_TOKENS = (*(str(d) for d in range(10)), *LISTOPS_OPERATIONS)

Tree = str | tuple  # a leaf's token, or (token, child, ...)


def _random_tree(depth: int, rng: np.random.Generator) -> Tree:
    if depth == 0:
        return str(int(rng.integers(10)))
    deep, other = _random_tree(depth - 1, rng), _random_tree(int(rng.integers(depth)), rng)
    operation = LISTOPS_OPERATIONS[int(rng.integers(len(LISTOPS_OPERATIONS)))]
    return (operation, deep, other) if rng.random() < 0.5 else (operation, other, deep)


def evaluate_listops(tree: Tree) -> int:
    """The value of a list-operations tree."""
    if isinstance(tree, str):
        return int(tree)
    operation, *children = tree
    values = [evaluate_listops(child) for child in children]
    return max(values) if operation == "MAX" else min(values)


def listops(n: int, depth: int, rng: np.random.Generator) -> tuple[list[Tree], np.ndarray]:
    """``n`` generated trees of depth ``depth`` and their values, (n,) int64."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"tree_depth must be an integer >= 1, got {depth!r}")
    trees = [_random_tree(depth, rng) for _ in range(n)]
    return trees, np.array([evaluate_listops(t) for t in trees], np.int64)


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(text: str, where: str = "tree") -> Tree:
    """A bracketed tree, ``(TOKEN CHILD [CHILD])`` or a bare token; a
    ValueError naming ``where`` for unbalanced brackets, an empty tree, a
    bracket without its token and a node of more than two children."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise ValueError(f"{where}: empty tree")
    position = 0

    def node() -> Tree:
        nonlocal position
        if position == len(tokens):
            raise ValueError(f"{where}: unbalanced brackets (a '(' is never closed)")
        token = tokens[position]
        position += 1
        if token == ")":
            raise ValueError(f"{where}: unbalanced brackets (a ')' closes nothing)")
        if token != "(":
            return token
        if position == len(tokens):
            raise ValueError(f"{where}: unbalanced brackets (a '(' is never closed)")
        if tokens[position] in "()":
            raise ValueError(f"{where}: empty tree '()'" if tokens[position] == ")" else
                             f"{where}: a bracket opens with its node's token, not another '('")
        token = tokens[position]
        position += 1
        children = []
        while position < len(tokens) and tokens[position] != ")":
            children.append(node())
        if position == len(tokens):
            raise ValueError(f"{where}: unbalanced brackets (a '(' is never closed)")
        position += 1
        if len(children) > 2:
            raise ValueError(f"{where}: node {token!r} has {len(children)} children; the tree cell is binary "
                             "(at most two)")
        return (token, *children)

    tree = node()
    if position != len(tokens):
        raise ValueError(f"{where}: unbalanced brackets (text after the tree's last ')')")
    return tree


def read_tree_file(path: str | Path) -> tuple[list[Tree], list[str], tuple[str, ...]]:
    """The trees, their labels and the classes of a ``.trees`` file (module
    doc); every error names its line, and comes before any work."""
    path = Path(path)
    trees, labels, classes = [], [], None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}, line {number}"
        text = line.strip()
        if number == 1 and text.startswith("#") and text[1:].strip().startswith("classes:"):
            classes = tuple(text[1:].strip().removeprefix("classes:").split())
            continue
        if not text or text.startswith("#"):
            continue
        label, _, rest = text.partition(" ")
        if label.startswith("("):
            raise ValueError(f"{where}: a line is LABEL TREE; this one starts with a tree")
        if classes is not None and label not in classes:
            raise ValueError(f"{where}: label {label!r} is none of the classes {' '.join(classes)}")
        trees.append(parse_tree(rest, where))
        labels.append(label)
    if not trees:
        raise ValueError(f"{path}: no trees (each line: LABEL TREE)")
    if classes is None:
        seen = set(labels)
        numeric = all(re.fullmatch(r"-?\d+", label) for label in seen)
        classes = tuple(sorted(seen, key=int if numeric else str))
    return trees, labels, classes


def tree_tokens(tree: Tree) -> list[str]:
    return [tree] if isinstance(tree, str) else [tree[0], *(t for child in tree[1:] for t in tree_tokens(child))]


def encode_trees(trees: list[Tree], tokens: tuple[str, ...], rows: int | None = None) -> np.ndarray:
    """(n, M, 3 + len(tokens)) float32: each tree's nodes in breadth-first
    order, root first (:mod:`targetprop.core.tree`'s rows), padded to M rows
    (``rows``; default the largest tree's count) with depth −1."""
    index = {token: i for i, token in enumerate(tokens)}

    def nodes_of(tree: Tree) -> list[tuple]:
        out, queue = [], deque([(tree, 0)])
        while queue:
            node, depth = queue.popleft()
            token, children = (node, ()) if isinstance(node, str) else (node[0], node[1:])
            links = []
            for child in children:
                links.append(len(out) + len(queue) + 1)
                queue.append((child, depth + 1))
            out.append((token, *links, *[-1] * (2 - len(links)), depth))
        return out

    listed = [nodes_of(tree) for tree in trees]
    sizes = [len(nodes) for nodes in listed]
    rows = max(sizes) if rows is None else rows
    encoded = np.zeros((len(trees), rows, FEATURES + len(tokens)), np.float32)
    encoded[:, :, [LEFT, RIGHT]] = -1
    encoded[:, :, DEPTH] = -1
    for n, nodes in enumerate(listed):
        if len(nodes) > rows:
            raise ValueError(f"tree {n} has {len(nodes)} nodes, more than the {rows} rows of the encoding")
        for i, (token, left, right, depth) in enumerate(nodes):
            if token not in index:
                raise ValueError(f"tree {n}: token {token!r} is not in the vocabulary")
            encoded[n, i, [LEFT, RIGHT, DEPTH]] = left, right, depth
            encoded[n, i, FEATURES + index[token]] = 1.0
    return encoded
