"""The documentation site builds in strict mode, lists every page, and its tutorials run."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Pages whose Python blocks are run, in order, in one namespace per page.
RUNNABLE = ["quickstart.md", "tutorials/model-from-equations.md", "tutorials/recurrent-delays.md",
            "tutorials/eventprop-vs-surrogate.md"]


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for v in node.values() for p in nav_pages(v)]
    return [p for item in node for p in nav_pages(item)]


def config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    listed = nav_pages(config()["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk, (set(listed) ^ set(on_disk))


def test_api_pages_cover_every_public_subpackage():
    api = " ".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    packages = [p.name for p in (ROOT / "ctsnn").iterdir()
                if (p / "__init__.py").exists() and p.name not in ("bench", "demos", "papers")]
    missing = [name for name in packages if f"::: ctsnn.{name}" not in api]
    assert not missing, f"no API page for ctsnn.{missing}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_site_builds_in_strict_mode(tmp_path):
    """Measured 11-33 s on a loaded 2-core machine: a default test, not a slow one."""
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for page in ("index.html", "api/analysis/index.html", "tutorials/discrete-vs-continuous/"
                 "index.html", "study-tools/index.html"):
        assert (tmp_path / page).exists(), page
    api = (tmp_path / "api/analysis/index.html").read_text()
    assert "compare_time_modes" in api and "van_rossum_distance" in api
    assert ":class:" not in api and ":func:" not in api  # docs/hooks/rst_roles.py
    assert "a <code>Layer</code>, a <code>NeuronModel</code>" in api


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE)
def test_tutorial_code_runs(page, monkeypatch, tmp_path):
    """Each page's Python blocks, run in order (some take tens of seconds: slow)."""
    monkeypatch.chdir(tmp_path)  # pages may write figures
    text = (DOCS / page).read_text()
    code = "\n".join(re.findall(r"^```python\n(.*?)\n```", text, re.M | re.S))
    assert code
    old = torch.get_default_dtype()
    try:
        exec(compile(code, page, "exec"), {"__name__": "__docs__"})  # noqa: S102
    finally:
        torch.set_default_dtype(old)
