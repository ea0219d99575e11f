#!/usr/bin/env bash
# Create (idempotently) the Brian2 reference environment used by benchmark W5.
#
# Brian2 2.9 needs numpy < 2, which conflicts with the main environment, so it
# lives in its own venv at <repo>/.venv-brian2 (gitignored by `.venv*/`).
# Only PyPI packages are used.  The script prints the venv's python path on its
# last line of stdout; progress messages go to stderr.
#
# Usage:  bash ctsnn/bench/brian2_env.sh        (PYTHON=/path/to/python3 to choose the base)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # this file is <repo>/ctsnn/bench/
venv="${repo_root}/.venv-brian2"
base_python="${PYTHON:-python3}"
py="${venv}/bin/python"

check() {
    "${py}" - <<'PY' >/dev/null 2>&1
import brian2, numpy, Cython, setuptools
assert brian2.__version__.startswith("2.9"), brian2.__version__
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
PY
}

if [[ -x "${py}" ]] && check; then
    echo "Brian2 environment already present at ${venv}" >&2
else
    if [[ ! -x "${py}" ]]; then
        echo "Creating venv ${venv} with ${base_python}" >&2
        "${base_python}" -m venv "${venv}"
    fi
    echo "Installing brian2==2.9.*, numpy<2, cython, setuptools" >&2
    "${py}" -m pip install --quiet --upgrade pip >&2
    "${py}" -m pip install --quiet "brian2==2.9.*" "numpy<2" cython setuptools >&2
    if ! check; then
        echo "error: Brian2 environment at ${venv} failed its import check" >&2
        exit 1
    fi
fi
"${py}" -c 'import brian2, numpy; print("brian2", brian2.__version__, "numpy", numpy.__version__)' >&2
echo "${py}"
