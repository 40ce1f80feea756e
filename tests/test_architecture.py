"""Imports run one way (the contracts in pyproject.toml, checked by
import-linter): core ← autoencoders ← rules ← registry ← running, plotting ← cli,
and the rule families never import each other."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(src)}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
               "--no-cache"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = lint_imports(ROOT / "src", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    """The check can fail: the engine importing the registry is reported."""
    shutil.copytree(ROOT / "src" / "targetprop", tmp_path / "src" / "targetprop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    rule = tmp_path / "src" / "targetprop" / "core" / "rule.py"
    rule.write_text(rule.read_text() + "\nfrom ..registry import RULES  # noqa\n")
    result = lint_imports(tmp_path / "src", tmp_path)
    assert result.returncode != 0 and "targetprop.core.rule -> targetprop.registry" in result.stdout


def test_running_code_has_no_function_longer_than_60_lines():
    """The trainer, data and command line stay readable in screen-sized pieces."""
    import ast

    package = ROOT / "src" / "targetprop"
    long = []
    for path in [*sorted((package / "running").glob("*.py")), package / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
