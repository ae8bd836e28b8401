#!/usr/bin/env bash
# Builds and tests the Python package `lav2` (python/, pyproject.toml) against the CLI:
#
#   scripts/test-python.sh            # build the CLI, `pip install .` into target/py-venv, pytest
#   scripts/test-python.sh -k stream  # extra arguments go to pytest
#
# Environment: PYTHON (the interpreter the venv is made from; default python3), LAV2_PY_VENV
# (default target/py-venv), LAV2_BUILD_LOCK (a file: the cargo and pip builds run under
# `flock` on it, for machines where several builds share the cores), LAV2_CONFORMANCE and CI
# (as for the Rust tests: missing conformance data skips loudly, or fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${LAV2_PY_VENV:-$repo/target/py-venv}

locked() {
    if [[ -n "${LAV2_BUILD_LOCK:-}" ]]; then flock "$LAV2_BUILD_LOCK" "$@"; else "$@"; fi
}

if [[ ! -x "$venv/bin/python" ]]; then
    echo "== venv $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
# One PATH for every build, the venv's bin (maturin) first: lav2's build.rs looks for nvcc on
# PATH and reruns when PATH changes, so the CLI and the wheel share one build of lav2.
export PATH="$venv/bin:$PATH"

echo "== cargo build --release --bin lav2"
locked cargo build --release --bin lav2
# maturin is preinstalled so that `pip install .` builds without an isolated build environment
# (no download of the build backend at each run).
if ! "$venv/bin/python" -c "import maturin, numpy, pytest" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q "maturin>=1.5,<2" numpy pytest
fi

echo "== pip install . (the abi3 wheel, release profile)"
start=$(date +%s)
locked "$venv/bin/python" -m pip install -q --no-build-isolation \
    --force-reinstall --no-deps .
echo "   built and installed in $(($(date +%s) - start)) s"

echo "== pytest tests/python"
# From outside the repository, so that `import lav2` is the installed package, not python/lav2.
cd "$repo/target"
LAV2_CLI="$repo/target/release/lav2" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/tests/python" "$@"
