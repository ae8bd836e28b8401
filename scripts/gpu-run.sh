#!/usr/bin/env bash
# Runs on the GPU machine (no Rust, no network; nvcc 13, maybe compute-sanitizer, PyTorch +
# transformers), from the bundle scripts/gpu-bundle.sh built:
#
#   bash gpu-bundle/gpu-run.sh                 # every step, then the report
#   bash gpu-bundle/gpu-run.sh tests report    # only some steps (results accumulate in results/)
#
# Steps (in this order for "all"):
#   tests      every bundled test binary, LAV2_REQUIRE_GPU=1, conformance from the bundle
#   nvrtc      the GPU kernel tests again with the kernels compiled at run time by NVRTC
#              (LAV2_CUDA_JIT=nvrtc, quick shapes), where a libnvrtc can be found
#   sanitizer  compute-sanitizer memcheck on the GPU test binary (quick shapes, per-op tests)
#   bench      `lav2 bench --device cuda --json` (extra arguments: LAV2_BENCH_ARGS)
#   torch      python3 bench/torch_baseline.py (extra arguments: LAV2_TORCH_ARGS)
#   benches    each bundled bench binary (kernels, decode) with --bench (informational)
#   report     $OUT/report.md and $OUT/report.json from whatever results exist
# A failing step never stops the others. Each step is limited to LAV2_STEP_TIMEOUT seconds
# (default 540). Results and logs: $LAV2_RESULTS (default <bundle>/results); the report and the
# logs are copied to $OUT when it is set.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ -n "${LAV2_BUNDLE:-}" ]]; then
    BUNDLE="$LAV2_BUNDLE"
elif [[ -f "$HERE/bin/lav2.gz" || -x "$HERE/bin/lav2" ]]; then
    BUNDLE="$HERE"
else
    BUNDLE="$HERE/../gpu-bundle"
fi
BUNDLE="$(cd "$BUNDLE" 2>/dev/null && pwd)" || { echo "gpu-run: no bundle (run scripts/gpu-bundle.sh first)" >&2; exit 1; }
RESULTS="${LAV2_RESULTS:-$BUNDLE/results}"
BIN="$BUNDLE/.run"
STEP_TIMEOUT="${LAV2_STEP_TIMEOUT:-540}"
mkdir -p "$RESULTS/logs" "$BIN"
export LAV2_CONFORMANCE="$BUNDLE/conformance"
export RUST_BACKTRACE=1

log() { printf 'gpu-run: %s\n' "$*" >&2; }

# Records a step result: name, status (pass|fail|skip), seconds, detail.
record() {
    local f="$RESULTS/steps.tsv"
    touch "$f"
    grep -v -P "^\Q$1\E\t" "$f" >"$f.tmp" 2>/dev/null || true
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$f.tmp"
    mv "$f.tmp" "$f"
    log "$1: $2 ($3 s) $4"
}

unpack() {
    local gz base
    for gz in "$BUNDLE"/bin/*.gz "$BUNDLE"/tests/*.gz "$BUNDLE"/benches/*.gz; do
        [[ -e "$gz" ]] || continue
        base="$(basename "$(dirname "$gz")")"
        mkdir -p "$BIN/$base"
        gzip -dc "$gz" >"$BIN/$base/$(basename "$gz" .gz)"
        chmod +x "$BIN/$base/$(basename "$gz" .gz)"
    done
}

# Test binaries that need the build machine (the CLI tests run the binary at its build path; the
# experts tests run tesseract): their failures are reported but do not fail the GPU check.
informational() { [[ "$1" == cli || "$1" == experts ]]; }

summary_of() { # cargo test output -> "N passed, M failed"
    grep -E "^test result:" "$1" | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed", p, f}'
}

step_tests() {
    local t0 name log rc status any_fail=0 details=""
    t0=$(date +%s)
    for exe in "$BIN"/tests/*; do
        [[ -x "$exe" ]] || continue
        name="$(basename "$exe")"
        log="$RESULTS/logs/test-$name.log"
        log "test binary $name"
        (cd "$BUNDLE" && LAV2_REQUIRE_GPU=1 timeout "$STEP_TIMEOUT" "$exe") >"$log" 2>&1
        rc=$?
        status=pass
        if ((rc != 0)); then
            status=fail
            informational "$name" && status="fail (informational)" || any_fail=1
        fi
        details+="$name: $status, $(summary_of "$log")"$'\n'
        printf '%s\t%s\t%s\n' "$name" "$status" "$(summary_of "$log")" >>"$RESULTS/tests.tsv.new"
    done
    mv "$RESULTS/tests.tsv.new" "$RESULTS/tests.tsv" 2>/dev/null || true
    record tests "$([[ $any_fail == 0 ]] && echo pass || echo fail)" "$(($(date +%s) - t0))" \
        "$(tr '\n' ';' <<<"$details")"
}

# The folder holding lib<name>.so* (the CUDA toolkit's, the system's, or a pip wheel's such as
# PyTorch's nvidia-* packages), or nothing.
find_lib_dir() {
    local name="$1" d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
        if compgen -G "$d/lib$name.so*" >/dev/null; then
            echo "$d"
            return
        fi
    done
    python3 - "$name" <<'EOF' 2>/dev/null
import glob, os, site, sys
name = sys.argv[1]
roots = site.getsitepackages() + [site.getusersitepackages()]
try:
    import torch
    roots.append(os.path.dirname(torch.__file__))
except Exception:
    pass
for r in roots:
    for pat in (f"nvidia/cu13/lib/lib{name}.so*", f"nvidia/cuda_{name}/lib/lib{name}.so*",
                f"nvidia/{name}/lib/lib{name}.so*", f"lib/lib{name}*.so*"):
        hits = glob.glob(os.path.join(r, pat))
        if hits:
            print(os.path.dirname(hits[0]))
            sys.exit(0)
EOF
}

# LD_LIBRARY_PATH with the folder of lib<name> in front, where one is found.
with_lib() {
    local dir
    dir="$(find_lib_dir "$1")"
    echo "${dir}${dir:+${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}"
}

step_nvrtc() {
    local t0 exe="$BIN/tests/gpu" log="$RESULTS/logs/nvrtc.log"
    t0=$(date +%s)
    [[ -x "$exe" ]] || { record nvrtc skip 0 "no gpu test binary"; return; }
    (cd "$BUNDLE" && LD_LIBRARY_PATH="$(with_lib nvrtc)" LAV2_CUDA_JIT=nvrtc LAV2_GPU_TEST_QUICK=1 LAV2_REQUIRE_GPU=1 \
        timeout "$STEP_TIMEOUT" "$exe" op_ synthetic e2e_cuda_graph) >"$log" 2>&1
    local rc=$?
    if grep -q "NVRTC (libnvrtc.so) could not be loaded\|libnvrtc.so not found" "$log"; then
        record nvrtc skip "$(($(date +%s) - t0))" "no libnvrtc found"
    else
        record nvrtc "$([[ $rc == 0 ]] && echo pass || echo fail)" "$(($(date +%s) - t0))" "$(summary_of "$log")"
    fi
}

step_sanitizer() {
    local t0 exe="$BIN/tests/gpu" log="$RESULTS/logs/sanitizer.log" cs
    t0=$(date +%s)
    cs="$(command -v compute-sanitizer || true)"
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [[ -z "$cs" && -x "$c" ]] && cs="$c"
    done
    [[ -n "$cs" ]] || { record sanitizer skip 0 "compute-sanitizer not installed"; return; }
    [[ -x "$exe" ]] || { record sanitizer skip 0 "no gpu test binary"; return; }
    (cd "$BUNDLE" && LAV2_GPU_TEST_QUICK=1 LAV2_REQUIRE_GPU=1 LAV2_NO_CUDA_GRAPH=1 \
        timeout "$STEP_TIMEOUT" "$cs" --tool memcheck --error-exitcode 86 "$exe" op_ --test-threads 1) >"$log" 2>&1
    local rc=$?
    local errors
    errors="$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$log" | tail -n 1)"
    record sanitizer "$([[ $rc == 0 ]] && echo pass || echo fail)" "$(($(date +%s) - t0))" \
        "${errors:-no summary} (exit $rc); $(summary_of "$log")"
}

step_bench() {
    local t0 exe="$BIN/bin/lav2" log="$RESULTS/logs/bench.log"
    t0=$(date +%s)
    if ! "$exe" bench --help >/dev/null 2>&1; then
        record bench skip 0 "this lav2 has no bench command"
        return
    fi
    # shellcheck disable=SC2086
    # cuBLAS (the vendor comparison) is opened at run time: PyTorch's copy serves where no toolkit is.
    LD_LIBRARY_PATH="$(with_lib cublas)" timeout "$STEP_TIMEOUT" "$exe" bench --device cuda --json \
        ${LAV2_BENCH_ARGS:-} >"$RESULTS/bench.json" 2>"$log"
    local rc=$?
    # Numbers from the PTX emulator (a libcuda of emu/ found by accident) are not a GPU's: never report them.
    if ((rc == 0)) && python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get('emulated') else 1)" \
        "$RESULTS/bench.json" 2>/dev/null; then
        mv "$RESULTS/bench.json" "$RESULTS/bench.emulated.json"
        record bench fail "$(($(date +%s) - t0))" "the device is the PTX emulator, not a GPU: no timing to report"
        return
    fi
    if ((rc == 0)) && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$RESULTS/bench.json" 2>/dev/null; then
        record bench pass "$(($(date +%s) - t0))" "$(tail -n 1 "$log")"
    else
        record bench fail "$(($(date +%s) - t0))" "exit $rc: $(tail -n 2 "$log" | tr '\n' ' ')"
    fi
}

step_torch() {
    local t0 log="$RESULTS/logs/torch.log"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    timeout "$STEP_TIMEOUT" python3 "$BUNDLE/bench/torch_baseline.py" --out "$RESULTS/torch.json" ${LAV2_TORCH_ARGS:-} >"$log" 2>&1
    local rc=$?
    if ((rc == 0)); then
        record torch pass "$(($(date +%s) - t0))" "$(tail -n 1 "$log")"
    else
        record torch fail "$(($(date +%s) - t0))" "exit $rc: $(tail -n 2 "$log" | tr '\n' ' ')"
    fi
}

step_benches() {
    local t0 any=0 rc name details=""
    t0=$(date +%s)
    for exe in "$BIN"/benches/*; do
        [[ -x "$exe" ]] || continue
        any=1
        name="$(basename "$exe")"
        (cd "$BUNDLE" && LD_LIBRARY_PATH="$(with_lib cublas)" timeout "$STEP_TIMEOUT" "$exe" --bench) \
            >"$RESULTS/logs/bench-$name.log" 2>&1
        rc=$?
        details+="$name: exit $rc; "
    done
    if ((any == 0)); then
        record benches skip 0 "no bench binaries in the bundle"
    else
        record benches pass "$(($(date +%s) - t0))" "informational: ${details}see logs/bench-*.log"
    fi
}

step_report() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$RESULTS/gpu.txt" 2>/dev/null ||
        echo "unknown (nvidia-smi failed)" >"$RESULTS/gpu.txt"
    python3 - "$RESULTS" "$BUNDLE" <<'EOF'
import json, os, sys, datetime
res, bundle = sys.argv[1], sys.argv[2]

def load(name):
    try:
        with open(os.path.join(res, name)) as f:
            return json.load(f)
    except Exception:
        return None

steps = []
if os.path.exists(os.path.join(res, "steps.tsv")):
    for line in open(os.path.join(res, "steps.tsv")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 4:
            steps.append({"step": parts[0], "status": parts[1], "seconds": int(parts[2] or 0), "detail": parts[3]})
tests = []
if os.path.exists(os.path.join(res, "tests.tsv")):
    for line in open(os.path.join(res, "tests.tsv")):
        p = line.rstrip("\n").split("\t")
        if len(p) >= 3:
            tests.append({"binary": p[0], "status": p[1], "summary": p[2]})
gpu = open(os.path.join(res, "gpu.txt")).read().strip()
build = open(os.path.join(bundle, "BUILD_INFO")).read().strip() if os.path.exists(os.path.join(bundle, "BUILD_INFO")) else ""
bench = load("bench.json")
torch = load("torch.json")

def rows(b):
    return (b or {}).get("rows", []) if isinstance(b, dict) else []

# lav2 vs torch: same step and length, f16, without the adapter (torch runs the plain LLaMA).
ratios = []
if bench and torch:
    for t in torch.get("results", []):
        if t.get("tokens_per_s") is None:
            continue
        length = t.get("context") if t["step"] == "decode" else t.get("tokens")
        for r in rows(bench):
            if r.get("format") != "f16" or r.get("adapter"):
                continue
            step = r.get("step", "")
            rlen = r.get("context") if step.startswith("decode") else r.get("tokens")
            if step.startswith(t["step"]) and rlen == length and r.get("tokens_per_s"):
                ratios.append({"step": t["step"], "length": length, "torch_mode": t["mode"],
                               "lav2_tokens_per_s": r["tokens_per_s"], "torch_tokens_per_s": t["tokens_per_s"],
                               "ratio": r["tokens_per_s"] / t["tokens_per_s"]})

status = "pass" if steps and all(s["status"] in ("pass", "skip") for s in steps) else "fail"
report = {"gpu": gpu, "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "build": build,
          "status": status, "steps": steps, "tests": tests, "bench": bench, "torch": torch, "torch_ratios": ratios}
with open(os.path.join(res, "report.json"), "w") as f:
    json.dump(report, f, indent=2)

md = [f"# lav2 GPU check — {gpu}", "", f"- date: {report['date']}", f"- overall: **{status}**"]
md += [f"- {l}" for l in build.splitlines()]
md += ["", "## Steps", "", "| step | status | s | detail |", "|---|---|---|---|"]
for s in steps:
    md.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['detail'].replace('|', '/')[:400]} |")
if tests:
    md += ["", "## Test binaries", "", "| binary | status | result |", "|---|---|---|"]
    md += [f"| {t['binary']} | {t['status']} | {t['summary']} |" for t in tests]
if bench:
    vendor = bench.get("vendor_matmul") or {}
    vendor_txt = (f" ({vendor['library']}: {vendor['tflop_s']:.1f} TFLOP/s on the same product)"
                  if vendor.get("library") else "")
    md += ["", "## lav2 bench", "", f"device: {bench.get('device', '?')}; preset {bench.get('preset', '?')}: {bench.get('shape', '?')}; kernels: {bench.get('kernels', 'default')}", "",
           f"copy bandwidth {bench.get('copy_bandwidth_gb_s', 0):.0f} GB/s, f16 matmul {bench.get('matmul_tflop_s', 0):.1f} TFLOP/s{vendor_txt}", "",
           "| format | adapter | step | batch | tokens | context | ms (median) | ms min … max | tokens/s | roofline |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(bench):
        spread = (f"{r['ms_min']:.2f} … {r['ms_max']:.2f}" if "ms_min" in r else "–")
        md.append(f"| {r.get('format')} | {r.get('adapter')} | {r.get('step')} | {r.get('batch', 1)} | {r.get('tokens')} | {r.get('context')} | "
                  f"{r.get('ms', 0):.2f} | {spread} | {r.get('tokens_per_s', 0):.1f} | {100 * r.get('roofline_fraction', 0):.1f} % |")
    overhead = bench.get("adapter_overhead") or []
    if overhead:
        # `fraction` is null when the interleaved pairs' spread includes 0 (within noise).
        def adds(o):
            return "within noise" if o.get("fraction") is None else f"{100 * o['fraction']:+.1f} %"
        def per_pair(o):
            p = o.get("per_pair") or {}
            return (f"{100 * p['median']:+.1f} % ({100 * p['min']:+.1f} … {100 * p['max']:+.1f}), {p['samples']} pairs"
                    if p else "–")
        md += ["", "| format | step | context | adapter adds | per pair: median (min … max) |", "|---|---|---|---|---|"]
        md += [f"| {o['format']} | {o['step']} | {o['context']} | {adds(o)} | {per_pair(o)} |" for o in overhead]
    runs = bench.get("runs") or []
    if runs:
        md += ["", "| run | setup s | image → visual prompts ms | time to first token ms |", "|---|---|---|---|"]
        for r in runs:
            vis = r.get("vision_ms")
            md.append(f"| {r.get('label')} | {r.get('setup_s', 0):.1f} | {'–' if vis is None else f'{vis:.2f}'} | "
                      f"{r.get('time_to_first_token_ms', 0):.2f} |")
if torch:
    md += ["", "## PyTorch (transformers LlamaForCausalLM, f16)", "",
           f"torch {torch.get('torch')}, transformers {torch.get('transformers')}, {torch.get('device')}", "",
           "| mode | step | tokens | context | tokens/s | ms/token |", "|---|---|---|---|---|---|"]
    for t in torch.get("results", []):
        tps = t.get("tokens_per_s")
        md.append(f"| {t['mode']} | {t['step']} | {t.get('tokens')} | {t.get('context')} | "
                  f"{tps and round(tps, 1)} | {t.get('ms_per_token') and round(t['ms_per_token'], 3)} |")
    for e in torch.get("errors", []):
        md.append(f"- error: {e}")
if ratios:
    md += ["", "## lav2 / PyTorch (f16, no adapter)", "", "| step | length | vs | lav2 tok/s | torch tok/s | ratio |", "|---|---|---|---|---|---|"]
    for r in ratios:
        md.append(f"| {r['step']} | {r['length']} | {r['torch_mode']} | {r['lav2_tokens_per_s']:.1f} | "
                  f"{r['torch_tokens_per_s']:.1f} | {r['ratio']:.2f}× |")
with open(os.path.join(res, "report.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print(status)
EOF
    if [[ -n "${OUT:-}" ]]; then
        mkdir -p "$OUT/logs"
        cp "$RESULTS/report.md" "$RESULTS/report.json" "$OUT/" 2>/dev/null
        cp "$RESULTS"/logs/*.log "$OUT/logs/" 2>/dev/null
        [[ -f "$RESULTS/bench.json" ]] && cp "$RESULTS/bench.json" "$OUT/"
        [[ -f "$RESULTS/torch.json" ]] && cp "$RESULTS/torch.json" "$OUT/"
    fi
    log "report: $RESULTS/report.md${OUT:+ (copied to \$OUT)}"
}

STEPS=("$@")
if ((${#STEPS[@]} == 0)) || [[ "${STEPS[0]}" == all ]]; then
    STEPS=(tests nvrtc sanitizer bench torch benches report)
fi
log "bundle $BUNDLE; steps: ${STEPS[*]}"
unpack
nvidia-smi 2>&1 | head -n 15 >&2 || log "nvidia-smi not available"
for s in "${STEPS[@]}"; do
    case "$s" in
    tests | nvrtc | sanitizer | bench | torch | benches | report) "step_$s" ;;
    *) log "unknown step '$s' (tests nvrtc sanitizer bench torch benches report)" ;;
    esac
done
# Always leave a report behind.
[[ " ${STEPS[*]} " == *" report "* ]] || step_report
if [[ -f "$RESULTS/steps.tsv" ]] && cut -f2 "$RESULTS/steps.tsv" | grep -q '^fail$'; then
    exit 1
fi
exit 0
