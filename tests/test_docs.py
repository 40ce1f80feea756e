"""The documentation: its generated pages match the code and the benchmark
results, and the site builds without a warning."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_pages_are_current():
    # A subprocess, so that a rule another test registers for a while cannot leak into the pages.
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"stale documentation pages:\n{done.stderr}"


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    if not (ROOT / "mkdocs.yml").is_file():
        pytest.skip("no mkdocs.yml at the repository root")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_public_name_is_documented():
    """What ``import targetprop`` exports has a docstring of its own (the API
    page renders it); a value (``RULES``) is described in the package's."""
    import inspect

    import targetprop

    missing = []
    for name in targetprop.__all__:
        obj = getattr(targetprop, name)
        if inspect.isclass(obj):
            documented = bool((vars(obj).get("__doc__") or "").strip())
        elif callable(obj):
            documented = bool((obj.__doc__ or "").strip())
        else:
            documented = f"``{name}``" in (targetprop.__doc__ or "")
        if not documented:
            missing.append(name)
    assert not missing, missing
