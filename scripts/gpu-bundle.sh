#!/usr/bin/env bash
# Builds everything the GPU machine needs into gpu-bundle/ (git-ignored), HERE, where Rust and nvcc
# are: the release `lav2` binary, every release test binary (and the bench binaries, if any), the
# conformance data, scripts/gpu-run.sh and bench/torch_baseline.py. The GPU machine has no Rust
# toolchain and no network; it runs `bash gpu-bundle/gpu-run.sh`.
#
#   bash scripts/gpu-bundle.sh            # -> gpu-bundle/ (< 64 MiB, checked)
#
# Binaries are stripped of debug info and gzip-compressed (gpu-run.sh unpacks them). Env:
#   LAV2_BUNDLE_DIR      where to write (default: gpu-bundle/ in the repository)
#   LAV2_CONFORMANCE     the conformance folder (default: ../shared/conformance)
#   LAV2_ALLOW_NO_NVCC=1 bundle even if the kernels were not compiled (the GPU machine then needs
#                        libnvrtc to compile them at run time)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEST="${LAV2_BUNDLE_DIR:-$ROOT/gpu-bundle}"
CONF="${LAV2_CONFORMANCE:-$ROOT/../shared/conformance}"
LIMIT_MIB=64

log() { printf 'gpu-bundle: %s\n' "$*" >&2; }

command -v python3 >/dev/null || { log "python3 is needed to read cargo's JSON messages"; exit 1; }
[[ -f "$CONF/README.md" ]] || { log "conformance data not found at $CONF (set LAV2_CONFORMANCE)"; exit 1; }

# nvcc: the kernels must be compiled into the binaries (build.rs finds the pip-installed toolchain).
if [[ -z "${NVCC:-}" && -f scripts/install-nvcc.sh ]] && ! command -v nvcc >/dev/null; then
    if NVCC_LINE="$(bash scripts/install-nvcc.sh 2>/dev/null | tail -n 1)"; then
        export NVCC="${NVCC_LINE#export NVCC=}"
        log "using $NVCC"
    fi
fi

log "building release lav2"
cargo build --release --bin lav2
KREPORT="$(target/release/lav2 kernels 2>&1 || true)"
if grep -q "kernels were not compiled" <<<"$KREPORT"; then
    if [[ "${LAV2_ALLOW_NO_NVCC:-}" != 1 ]]; then
        log "the kernels were NOT compiled (no nvcc). Run scripts/install-nvcc.sh, or set LAV2_ALLOW_NO_NVCC=1"
        exit 1
    fi
    log "WARNING: bundling without compiled kernels; the GPU machine must have libnvrtc"
fi

list_executables() { # test|bench
    # cargo's JSON messages -> "name<TAB>path" of every test harness, or of every bench target
    python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    kinds = t.get("kind", [])
    if sys.argv[1] == "bench":
        if "bench" not in kinds:
            continue
    elif not m.get("profile", {}).get("test"):
        continue  # cargo also reports the lav2 binary that the CLI tests need

    name = t["name"] + ("-lib" if "lib" in kinds else "-bin" if "bin" in kinds else "")
    print(name + "\t" + m["executable"])
' "$1"
}

log "building release test binaries"
TESTS="$(cargo test --release --no-run --message-format=json | list_executables test)"
BENCHES=""
if compgen -G "benches/*.rs" >/dev/null; then
    log "building release bench binaries"
    BENCHES="$(cargo bench --no-run --message-format=json | list_executables bench)"
fi

rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/tests" "$DEST/benches" "$DEST/bench"

pack() { # src dst(.gz added)
    local tmp
    tmp="$(mktemp)"
    cp "$1" "$tmp"
    strip --strip-debug "$tmp" 2>/dev/null || objcopy --strip-debug "$tmp" 2>/dev/null || true
    gzip -9 -c "$tmp" >"$2.gz"
    rm -f "$tmp"
}

pack target/release/lav2 "$DEST/bin/lav2"
while IFS=$'\t' read -r name path; do
    [[ -n "$name" ]] || continue
    pack "$path" "$DEST/tests/$name"
    log "test binary: $name"
done <<<"$TESTS"
while IFS=$'\t' read -r name path; do
    [[ -n "$name" ]] || continue
    pack "$path" "$DEST/benches/$name"
    log "bench binary: $name"
done <<<"$BENCHES"

cp -r "$CONF" "$DEST/conformance"
cp scripts/gpu-run.sh "$DEST/gpu-run.sh"
cp bench/torch_baseline.py "$DEST/bench/torch_baseline.py"
{
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "rustc: $(rustc --version)"
    echo "$KREPORT" | head -n 1
} >"$DEST/BUILD_INFO"

SIZE_KIB="$(du -sk "$DEST" | cut -f1)"
log "bundle: $DEST, $((SIZE_KIB / 1024)) MiB"
if ((SIZE_KIB > LIMIT_MIB * 1024)); then
    log "ERROR: the bundle is larger than $LIMIT_MIB MiB"
    exit 1
fi
echo "$DEST"
