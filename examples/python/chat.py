#!/usr/bin/env python3
"""Ask a LLaMA-Adapter V2 model about an image (or just prompt a LLaMA), streaming the answer.

    pip install .            # from the repository root: builds and installs the `lav2` package
    python examples/python/chat.py --model llama-7b --adapter llama-adapter-v2 \\
        --image photo.jpg "What is in this picture?"
    python examples/python/chat.py --model stories260K --device cpu "Once upon a time"

Without a prompt it asks for one after another (each a fresh conversation, the image kept).
"""

import argparse
import sys
import time

import lav2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", help="the instruction (default: ask interactively)")
    parser.add_argument("--model", required=True, help="base model folder")
    parser.add_argument("--adapter", help="LLaMA-Adapter V2 folder")
    parser.add_argument("--image", help="JPEG or PNG file for the vision tower")
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--quant", help="f16 | int8 | int4")
    parser.add_argument("--context", help="text for the template's input slot")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.1, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        engine = lav2.Engine(args.model, adapter=args.adapter, device=args.device, quant=args.quant)
    except lav2.Error as e:
        print(f"chat.py: error: {e}", file=sys.stderr)
        return 1
    for notice in engine.notices:
        print(f"chat.py: {notice}", file=sys.stderr)
    print(f"chat.py: {engine.device}", file=sys.stderr)

    def answer(prompt: str) -> None:
        t0 = time.perf_counter()
        stream = engine.stream(
            prompt,
            image=args.image,
            context=args.context,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
        )
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        done = stream.completion
        seconds = time.perf_counter() - t0
        print(
            f"chat.py: {len(done.ids)} tokens in {seconds:.2f} s ({done.stop_reason})",
            file=sys.stderr,
        )

    try:
        if args.prompt is not None:
            answer(args.prompt)
            return 0
        while True:
            try:
                prompt = input("> ")
            except EOFError:
                print()
                return 0
            if prompt.strip():
                answer(prompt)
    except lav2.Error as e:
        print(f"chat.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 130


if __name__ == "__main__":
    sys.exit(main())
