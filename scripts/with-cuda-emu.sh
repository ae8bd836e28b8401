#!/usr/bin/env bash
# Runs a command against cuda-emu, the PTX-interpreting CUDA driver emulator (emu/), instead of
# the real driver:
#
#   scripts/with-cuda-emu.sh cargo test --test gpu
#   scripts/with-cuda-emu.sh target/release/lav2 --device cuda ...
#
# Builds the emulator optimised, installs it as target/cuda-emu/libcuda.so.1 (plus a libcuda.so
# link) and puts that directory first on LD_LIBRARY_PATH, so cudarc's dlopen("libcuda.so") finds
# it. The library is named libcuda.* only there: nothing else on a library path picks it up by
# accident. It reports itself as "cuda-emu (PTX emulator, not a GPU)"; its timings are host time.
# CUDA_EMU_CHECKS=none, CUDA_EMU_SEED=N and CUDA_EMU_PROFILE=FILE are read by the emulator.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Honour CARGO_TARGET_DIR like cargo does.
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in
    /*) ;;
    *) target="$root/$target" ;;
esac

(cd "$root" && cargo build --release --quiet -p cuda-emu)

dir="$target/cuda-emu"
mkdir -p "$dir"
# Copy to a temporary name first so a running process never sees a half-written library.
cp "$target/release/libcuda_emu.so" "$dir/libcuda.so.1.tmp"
mv -f "$dir/libcuda.so.1.tmp" "$dir/libcuda.so.1"
ln -sfn libcuda.so.1 "$dir/libcuda.so"

export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
