"""ctsnn.compiled pins numba's disk cache to a directory per version of the package's sources:
numba keys a cached kernel on its own file only, so a changed callee in another file would
otherwise be served as stale machine code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ctsnn.compiled import numba_cache_dir


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_directory_follows_every_kernel_module(tmp_path):
    kernel = "import numba\n\n@numba.njit(cache=True)\ndef f():\n    return {}\n"
    pkg = _tree(tmp_path / "pkg", {"a.py": "import numba\nx = 1\n", "sub/b.py": kernel.format(1),
                                   "doc.py": '"""no kernels here"""\n'})
    base = tmp_path / "cache"
    first = numba_cache_dir(pkg, base)
    assert first.parent == base / "numba"
    assert numba_cache_dir(pkg, base) == first  # deterministic
    (pkg / "doc.py").write_text('"""edited, still no kernels"""\n')
    assert numba_cache_dir(pkg, base) == first  # not a kernel module: caches stay valid
    (pkg / "sub" / "b.py").write_text(kernel.format(2))  # a callee in another file changed
    second = numba_cache_dir(pkg, base)
    assert second != first
    (pkg / "sub" / "b.py").rename(pkg / "b.py")  # same text, other place: another version
    assert numba_cache_dir(pkg, base) not in (first, second)


def _cache_dir_in_child(env: dict[str, str]) -> str:
    code = "import ctsnn, numba, os; print(os.environ['NUMBA_CACHE_DIR'], numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_pins_the_cache_and_respects_the_users_choice(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["CTSNN_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "import ctsnn, numba, os; print(os.environ['NUMBA_CACHE_DIR']);"
         " print(numba.config.CACHE_DIR)"], env=env, capture_output=True, text=True, check=True)
    pinned, config = proc.stdout.split()
    assert pinned == config == str(numba_cache_dir(base=tmp_path))
    mine = str(tmp_path / "mine")
    assert _cache_dir_in_child({"NUMBA_CACHE_DIR": mine}) == [mine, mine]


def test_older_versions_are_pruned(tmp_path):
    root = tmp_path / "numba"
    for k in range(6):
        (root / f"old{k}").mkdir(parents=True)
        os.utime(root / f"old{k}", (k, k))  # used in 1970
    (root / "today").mkdir()  # used now by another process: kept whatever its rank
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["CTSNN_CACHE_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", "import ctsnn.compiled"], env=env, check=True)
    kept = sorted(p.name for p in root.iterdir())
    assert kept == sorted(["today", "old4", "old5", numba_cache_dir(base=tmp_path).name])
