#!/usr/bin/env bash
# Create (idempotently) the eventax reference environment used by benchmark W7.
#
# eventax 0.1.0 needs JAX (CPU wheels from PyPI) and Diffrax; it must not share the main
# environment (torch), so it lives in its own venv at <repo>/.venv-eventax (gitignored by
# `.venv*/`). Only PyPI packages are used. The script prints the venv's python path on its
# last line of stdout; progress messages go to stderr.
#
# Usage:  bash ctsnn/bench/eventax_env.sh        (PYTHON=/path/to/python3 to choose the base)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # this file is <repo>/ctsnn/bench/
venv="${repo_root}/.venv-eventax"
base_python="${PYTHON:-python3}"
py="${venv}/bin/python"

check() {
    "${py}" - <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import jax, numpy, eventax
assert md.version("eventax") == "0.1.0", md.version("eventax")
assert jax.devices()[0].platform == "cpu"
PY
}

if [[ -x "${py}" ]] && check; then
    echo "eventax environment already present at ${venv}" >&2
else
    if [[ ! -x "${py}" ]]; then
        echo "Creating venv ${venv} with ${base_python}" >&2
        "${base_python}" -m venv "${venv}"
    fi
    echo "Installing eventax==0.1.0 and jax (CPU wheels)" >&2
    "${py}" -m pip install --quiet --upgrade pip >&2
    "${py}" -m pip install --quiet "eventax==0.1.0" "jax[cpu]" >&2
    if ! check; then
        echo "error: eventax environment at ${venv} failed its import check" >&2
        exit 1
    fi
fi
"${py}" -c 'import importlib.metadata as md, jax; print("eventax", md.version("eventax"), "jax", jax.__version__)' >&2
echo "${py}"
