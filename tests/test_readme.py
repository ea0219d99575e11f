"""The README's code runs, and its Quick start matches what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start$(.*?)(?=^## )", text, re.M | re.S).group(1)
    return re.findall(r"^```bash\n(.*?)\n```", section, re.M | re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    blocks = _quick_start_blocks()
    assert len(blocks) == 2
    assert "ctsnn demo" in blocks[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci


def test_readme_python_snippets_run():
    text = (ROOT / "README.md").read_text()
    code = "\n".join(re.findall(r"^```python\n(.*?)\n```", text, re.M | re.S))
    namespace: dict = {}
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # as a user's fresh session
    try:
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    finally:
        torch.set_default_dtype(old)
    assert namespace["exact"].spikes.times.numel() > 0
    assert namespace["res"].layers[0].spikes.n_units == 30
    assert namespace["adex"].n == 10
