#!/usr/bin/env python3
"""The PyTorch side of `lav2 bench`: Hugging Face transformers' LlamaForCausalLM with the same
synthetic LLaMA-7B shapes (dim 4096, 32 layers, 32 heads, FFN 11008, vocab 32000), random f16
weights, batch 1, on the same GPU.

Measured, like lav2 bench:
  eager           decode tokens/s at each context (--contexts, default 128 and 2048) with the
                  dynamic KV cache, and prefill tokens/s at each length (--prefill, default 128, 512)
  static+compile  decode with a StaticCache and torch.compile(mode="reduce-overhead", i.e. CUDA
                  graphs), and prefill through torch.compile
Every result (or error) is written to --out as soon as it is known, so a timeout still leaves the
finished measurements. Needs only torch and transformers (no download: weights are random).

  python3 bench/torch_baseline.py --out torch.json                     # 7B on the GPU
  python3 bench/torch_baseline.py --preset tiny --device cpu --out t.json  # a quick check anywhere
"""

import argparse
import inspect
import json
import sys
import time
import traceback

PRESETS = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
    "13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                num_key_value_heads=40, vocab_size=32000),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=4096),
}


def ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="7b", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--contexts", type=ints, default=[128, 2048])
    ap.add_argument("--prefill", type=ints, default=[128, 512])
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--out", default="torch_baseline.json")
    args = ap.parse_args()

    report = {"preset": args.preset, "shape": PRESETS[args.preset], "results": [], "errors": []}

    def save():
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)

    def error(what, e):
        msg = f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        report["errors"].append(msg)
        print("error: " + msg, file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        save()

    try:
        import torch
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        error("import", e)
        return 1
    report["torch"] = torch.__version__
    report["transformers"] = transformers.__version__
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        error("device", RuntimeError("CUDA is not available to torch"))
        return 1
    report["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    report["dtype"] = str(dtype).replace("torch.", "")
    n_new = args.decode_tokens
    max_len = max(args.contexts + args.prefill) + n_new + 16

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def add(mode, step, tokens, context, seconds, count):
        r = {"mode": mode, "step": step, "tokens": tokens, "context": context,
             "tokens_per_s": count / seconds, "ms_per_token": 1e3 * seconds / count}
        report["results"].append(r)
        print(f"{mode:15} {step:8} tokens {tokens:5} context {context:5}: {r['tokens_per_s']:10.1f} tokens/s",
              file=sys.stderr)
        save()

    # ---- the model: random weights made directly on the device ----
    t0 = time.time()
    config = LlamaConfig(**PRESETS[args.preset], max_position_embeddings=max_len, rms_norm_eps=1e-5,
                         rope_theta=10000.0, tie_word_embeddings=False)
    try:
        config._attn_implementation = "sdpa"
    except Exception:  # noqa: BLE001 (older versions: the default is fine)
        pass
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    model = model.to(device=dev, dtype=dtype).eval()
    report["params"] = sum(p.numel() for p in model.parameters())
    report["model_init_s"] = time.time() - t0
    save()
    vocab = config.vocab_size
    # transformers 5 renames the cache argument (past_key_values -> cache); use what this one takes.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    report["cache_argument"] = cache_kw

    def cache_of(out):
        for name in ("past_key_values", "cache"):
            c = getattr(out, name, None)
            if c is not None:
                return c
        raise RuntimeError("the model output carries no cache")
    gen = torch.Generator(device="cpu").manual_seed(0)

    def prompt(n):
        return torch.randint(3, vocab, (1, n), generator=gen).to(dev)

    def best_of(fn, repeats):
        best = float("inf")
        for _ in range(repeats):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    with torch.inference_mode():
        # ---- eager prefill ----
        for n in args.prefill:
            try:
                ids = prompt(n)
                model(ids, use_cache=False)  # warm-up
                add("eager", "prefill", n, 0, best_of(lambda: model(ids, use_cache=False), args.repeats), n)
            except Exception as e:  # noqa: BLE001
                error(f"eager prefill {n}", e)

        # ---- eager decode with the dynamic cache ----
        for ctx in args.contexts:
            try:
                best = float("inf")
                for _ in range(args.repeats):
                    out = model(prompt(ctx), use_cache=True)
                    past = cache_of(out)
                    tok = out.logits[:, -1:].argmax(-1)
                    sync()
                    t = time.perf_counter()
                    for _ in range(n_new):
                        out = model(tok, use_cache=True, **{cache_kw: past})
                        past = cache_of(out)
                        tok = out.logits[:, -1:].argmax(-1)
                    sync()
                    best = min(best, time.perf_counter() - t)
                add("eager", "decode", n_new, ctx, best, n_new)
            except Exception as e:  # noqa: BLE001
                error(f"eager decode at context {ctx}", e)

        if args.no_compile:
            print(json.dumps({"done": len(report["results"]), "errors": len(report["errors"])}))
            return 0

        # ---- static cache + torch.compile decode ----
        try:
            from transformers import StaticCache

            cache = None
            last = None
            for kw in (dict(config=config, max_batch_size=1, max_cache_len=max_len, device=dev, dtype=dtype),
                       dict(config=config, batch_size=1, max_cache_len=max_len, device=dev, dtype=dtype),
                       dict(config=config, max_cache_len=max_len)):
                try:
                    cache = StaticCache(**kw)
                    break
                except TypeError as e:
                    last = e
            if cache is None:
                raise last

            def step(tok, pos):
                return model(tok, position_ids=pos.unsqueeze(0), cache_position=pos, use_cache=True,
                             return_dict=False, **{cache_kw: cache})[0]

            compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
            mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

            def decode_from(ctx, steps, fn):
                cache.reset()
                pos = torch.arange(ctx, device=dev)
                logits = model(prompt(ctx), position_ids=pos.unsqueeze(0), cache_position=pos, use_cache=True,
                               return_dict=False, **{cache_kw: cache})[0]
                tok = logits[:, -1:].argmax(-1)
                sync()
                t = time.perf_counter()
                for i in range(steps):
                    if mark is not None:
                        mark()
                    logits = fn(tok, torch.tensor([ctx + i], device=dev))
                    tok = logits[:, -1:].argmax(-1).clone()
                sync()
                return time.perf_counter() - t

            t_compile = time.time()
            decode_from(min(args.contexts), 4, compiled)  # compiles and records the graphs
            report["compile_decode_s"] = time.time() - t_compile
            for ctx in args.contexts:
                try:
                    best = min(decode_from(ctx, n_new, compiled) for _ in range(args.repeats))
                    add("static+compile", "decode", n_new, ctx, best, n_new)
                except Exception as e:  # noqa: BLE001
                    error(f"static+compile decode at context {ctx}", e)
        except Exception as e:  # noqa: BLE001
            error("static+compile decode", e)

        # ---- torch.compile prefill ----
        try:
            fwd = torch.compile(model.forward, dynamic=False)
            for n in args.prefill:
                try:
                    ids = prompt(n)
                    t_compile = time.time()
                    fwd(ids, use_cache=False)
                    fwd(ids, use_cache=False)
                    report[f"compile_prefill_{n}_s"] = time.time() - t_compile
                    add("static+compile", "prefill", n, 0, best_of(lambda: fwd(ids, use_cache=False), args.repeats), n)
                except Exception as e:  # noqa: BLE001
                    error(f"compiled prefill {n}", e)
        except Exception as e:  # noqa: BLE001
            error("compiled prefill", e)

    save()
    print(json.dumps({"done": len(report["results"]), "errors": len(report["errors"])}))
    return 0 if report["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
