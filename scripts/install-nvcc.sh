#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolchain (nvcc, ptxas, cudafe, headers) from NVIDIA's pip wheels
# into a private folder, so kernels can be compiled on machines without a CUDA installation (no GPU
# or driver is needed to compile). Idempotent: a working nvcc already there is reused.
#
#   bash scripts/install-nvcc.sh            # installs into ${LAV2_NVCC_DIR:-$HOME/.cache/lav2/nvcc}
#   eval "$(bash scripts/install-nvcc.sh)"   # and exports NVCC (and LAV2_NVRTC_LIB) for this shell
#
# All messages go to stderr. stdout is shell: `export LAV2_NVRTC_LIB=<folder of libnvrtc.so>`
# (NVRTC 13.0, for the tests of the run-time compile fallback; its own folder, see below), then,
# as the last line, exactly `export NVCC=<path to nvcc>`:
#   eval "$(bash scripts/install-nvcc.sh)"
# nvcc itself still needs a host C++ compiler (gcc/g++) on PATH, even for --ptx / --cubin.
set -euo pipefail

DIR="${1:-${LAV2_NVCC_DIR:-$HOME/.cache/lav2/nvcc}}"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if command -v python3 >/dev/null 2>&1; then PYTHON=python3; else PYTHON=python; fi
fi

log() { printf 'install-nvcc: %s\n' "$*" >&2; }

# The wheels for CUDA 13 put everything under nvidia/cu13/; older CUDA 12 wheels used
# nvidia/cuda_nvcc/. Look in both so a pre-populated folder of either kind is accepted.
find_nvcc() {
    local c
    for c in "$DIR/nvidia/cu13/bin/nvcc" "$DIR/nvidia/cuda_nvcc/bin/nvcc"; do
        if [[ -x "$c" ]]; then printf '%s\n' "$c"; return 0; fi
    done
    return 1
}

nvcc_runs() { "$1" --version >/dev/null 2>&1; }

if nvcc_path="$(find_nvcc)" && nvcc_runs "$nvcc_path"; then
    log "nvcc already installed in $DIR"
else
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        log "error: python3 with pip is needed to install the CUDA toolchain wheels"
        exit 1
    fi
    mkdir -p "$DIR"
    log "installing CUDA 13.0 toolchain wheels into $DIR (about 200 MB download)"
    # --upgrade: a half-finished earlier install in the same --target folder is replaced, not kept.
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --upgrade --target "$DIR" \
        'nvidia-cuda-nvcc==13.0.*' \
        'nvidia-cuda-runtime==13.0.*' \
        'nvidia-cuda-crt==13.0.*' \
        'nvidia-nvvm==13.0.*' \
        'nvidia-cuda-cccl==13.0.*' >&2
    if ! nvcc_path="$(find_nvcc)"; then
        log "error: pip finished but no nvcc was found under $DIR/nvidia/*/bin"
        exit 1
    fi
fi

root="$(cd "$(dirname "$nvcc_path")/.." && pwd)"

# Layout check: nvcc finds cicc via nvvm/bin, ptxas in bin/, and cuda_runtime.h in include/.
# Wheels occasionally drop the executable bit on extracted binaries; restore it.
for exe in "$root/bin/nvcc" "$root/bin/ptxas" "$root/bin/fatbinary" "$root/bin/cudafe++" "$root/nvvm/bin/cicc"; do
    if [[ -f "$exe" && ! -x "$exe" ]]; then chmod +x "$exe"; fi
done
missing=()
for f in bin/ptxas bin/cudafe++ nvvm/bin/cicc include/cuda_runtime.h include/cuda_fp16.h include/crt/host_config.h; do
    [[ -e "$root/$f" ]] || missing+=("$f")
done
if ((${#missing[@]})); then
    log "error: incomplete toolchain under $root, missing: ${missing[*]}"
    log "remove $DIR and run this script again"
    exit 1
fi
if [[ -d "$root/include/cccl" ]]; then
    log "cccl headers: $root/include/cccl"
fi

if ! command -v g++ >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "warning: no gcc/g++ on PATH; nvcc needs a host compiler (e.g. apt-get install g++)"
fi

# A real compile proves the toolchain works end to end (cicc + ptxas), not just that nvcc starts.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' '#include <cuda_fp16.h>' \
    'extern "C" __global__ void probe(__half* x) { x[threadIdx.x] = __hadd(x[threadIdx.x], x[0]); }' \
    >"$tmp/probe.cu"
if ! "$nvcc_path" -gencode=arch=compute_90a,code=sm_90a --cubin -o "$tmp/probe.cubin" "$tmp/probe.cu" >&2; then
    log "error: $nvcc_path could not compile a test kernel (is gcc on PATH?)"
    exit 1
fi

log "$("$nvcc_path" --version | tail -n 2 | head -n 1)"

# NVRTC gets a --target folder of its own: pip --target replaces a top-level folder it installs
# into (nvidia/), so adding a wheel to the toolchain's folder later would remove nvcc.
NVRTC_DIR="$DIR/nvrtc-13.0"
find_nvrtc() { compgen -G "$NVRTC_DIR/nvidia/cu13/lib/libnvrtc.so*" >/dev/null; }
if ! find_nvrtc; then
    log "installing NVRTC 13.0 into $NVRTC_DIR"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --upgrade --target "$NVRTC_DIR" 'nvidia-cuda-nvrtc==13.0.*' >&2 ||
        log "warning: NVRTC could not be installed; its tests will skip"
fi
if find_nvrtc; then
    printf 'export LAV2_NVRTC_LIB=%s\n' "$NVRTC_DIR/nvidia/cu13/lib"
fi
printf 'export NVCC=%s\n' "$nvcc_path"
