"""Tests of the Python package `lav2` against the command line (`lav2 generate`/`forward`).

Run by scripts/test-python.sh. The CLI is `$LAV2_CLI` (else target/release/lav2); the
conformance data `$LAV2_CONFORMANCE` (else ../shared/conformance beside the repository). Missing
data skips a test loudly, or fails it under CI=true.
"""

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import lav2

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("LAV2_CLI", REPO / "target" / "release" / "lav2"))
PROMPT = "Once upon a time"


def conformance(name):
    root = Path(os.environ.get("LAV2_CONFORMANCE", REPO.parent / "shared" / "conformance"))
    path = root / name
    if not path.exists():
        message = f"conformance data {path} is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true)")
        print(f"SKIPPED: {message}")
        pytest.skip(message)
    return path


def cli(*args, check=True):
    if not CLI.is_file():
        pytest.fail(f"the lav2 command line {CLI} is missing: cargo build --release --bin lav2")
    proc = subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lav2 {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def cli_generate(model, *args):
    out = cli("generate", "--model", model, "--json", *args).stdout
    return json.loads(out.strip().splitlines()[-1])


def read_safetensors(path):
    """The F32 tensors of a safetensors file, as arrays."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    return tensors


def png_bytes(rgb):
    """A PNG file of a uint8 [H, W, 3] array (no compression library beyond zlib needed)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def stories():
    return conformance("stories260K")


@pytest.fixture(scope="module")
def engine(stories):
    return lav2.Engine(stories, device="cpu")


@pytest.fixture(scope="module")
def case2():
    root = conformance("adapter-v2/case-2")
    expected = json.loads((root / "expected.json").read_text())
    tensors = read_safetensors(root / "expected.safetensors")
    return root, expected, tensors


@pytest.fixture(scope="module")
def adapter_engine(case2):
    root = case2[0]
    return lav2.Engine(root / "base", adapter=root / "adapter", device="cpu")


def test_engine_properties(engine):
    assert engine.vocab_size == 512
    assert engine.has_tokenizer and not engine.has_adapter
    assert engine.image_size is None
    assert engine.default_template == "none"
    assert engine.device.startswith("cpu")
    ids = engine.tokenize(PROMPT)
    assert ids[0] == engine.bos_id
    assert engine.detokenize(ids[1:]) == PROMPT
    assert engine.tokenize(PROMPT, bos=False) == ids[1:]
    assert engine.prompt_ids(PROMPT) == ids


def test_greedy_text_equals_the_cli(engine, stories):
    want = cli_generate(stories, "--prompt", PROMPT, "--temperature", 0, "--max-new-tokens", 60)
    done = engine.complete(PROMPT, max_new_tokens=60, temperature=0)
    assert done.text == want["text"]
    assert done.ids == want["ids"]
    assert done.stop_reason == want["stop_reason"]
    assert engine.generate(PROMPT, max_new_tokens=60, temperature=0) == want["text"]


def test_stream_yields_the_cli_stream(engine, stories):
    streamed = cli(
        "generate", "--model", stories, "--prompt", PROMPT, "--temperature", 0,
        "--max-new-tokens", 60,
    ).stdout
    stream = engine.stream(PROMPT, max_new_tokens=60, temperature=0)
    pieces = list(stream)
    # The CLI streams the same pieces, then a newline.
    assert "".join(pieces) + "\n" == streamed
    assert all(isinstance(p, str) for p in pieces)
    assert 30 <= len(pieces) <= 61
    assert stream.completion is not None and stream.completion.text == "".join(pieces)
    assert len(stream.completion.ids) == 60
    assert list(stream) == []


def test_sampled_text_equals_the_cli_for_the_same_seed(engine, stories):
    args = ("--temperature", 0.8, "--top-p", 0.9, "--seed", 7, "--max-new-tokens", 60)
    want = cli_generate(stories, "--prompt", PROMPT, *args)
    got = engine.complete(PROMPT, max_new_tokens=60, temperature=0.8, top_p=0.9, seed=7)
    assert got.text == want["text"]
    assert got.ids == want["ids"]
    pieces = engine.stream(PROMPT, max_new_tokens=60, temperature=0.8, top_p=0.9, seed=7)
    assert "".join(pieces) == want["text"]
    greedy = engine.generate(PROMPT, max_new_tokens=60, temperature=0)
    assert got.text != greedy


def test_prompt_ids_are_used_as_given(engine, stories):
    ids = [1, 403, 407]
    want = cli_generate(
        stories, "--prompt-ids", ",".join(map(str, ids)), "--temperature", 0,
        "--max-new-tokens", 20,
    )
    assert engine.generate(ids, max_new_tokens=20, temperature=0) == want["text"]
    assert engine.generate(np.array(ids), max_new_tokens=20, temperature=0) == want["text"]


def test_session_steps_logits_and_reset(engine):
    session = engine.session()
    session.prefill(PROMPT)
    first = session.logits()
    assert first.dtype == np.float32 and first.shape == (engine.vocab_size,)
    picked = session.step()
    assert picked == int(np.argmax(first))
    second = session.logits()
    assert session.step() == int(np.argmax(second))
    assert session.tokens == engine.tokenize(PROMPT) + [picked, int(np.argmax(second))]
    rest = session.generate(max_new_tokens=10, temperature=0)
    whole = engine.generate(PROMPT, max_new_tokens=12, temperature=0)
    assert whole.endswith(rest)
    session.reset()
    assert len(session) == 0
    session.prefill(PROMPT)
    np.testing.assert_array_equal(session.logits(), first)


def test_a_streaming_session_refuses_other_calls_until_closed(engine):
    session = engine.session()
    session.prefill(PROMPT)
    stream = session.stream(max_new_tokens=20, temperature=0)
    next(stream)
    with pytest.raises(lav2.BadInputError, match="streaming"):
        session.logits()
    stream.close()
    assert session.logits().shape == (engine.vocab_size,)
    assert list(stream) == []
    assert stream.completion.stop_reason == "stopped"
    assert len(stream.completion.ids) == 1

    # A stream dropped half-way lets go of the session too.
    stream = session.stream(max_new_tokens=20, temperature=0)
    next(stream)
    del stream
    assert session.logits().shape == (engine.vocab_size,)


def test_adapter_pixels_give_the_cli_logits_and_greedy_ids(adapter_engine, case2, tmp_path):
    root, expected, tensors = case2
    tokens = expected["tokens"]
    out = tmp_path / "logits.safetensors"
    cli(
        "forward", "--model", root / "base", "--adapter", root / "adapter",
        "--pixels", root / "expected.safetensors",
        "--prompt-ids", ",".join(map(str, tokens)), "--out", out,
    )
    want = read_safetensors(out)["logits"][-1]
    assert not adapter_engine.has_tokenizer
    assert adapter_engine.image_size == 28
    session = adapter_engine.session()
    pixels = np.array(tensors["pixels"], dtype=np.float32)
    session.set_image(pixels)
    session.prefill(tokens)
    got = session.logits()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, tensors["logits"][-1], rtol=0, atol=1e-3)
    greedy = expected["greedy_with_image"]
    done = session.complete(max_new_tokens=len(greedy), temperature=0, ignore_eos=True)
    assert done.ids == greedy
    assert done.text == ""  # no tokenizer
    # The engine's one-call form, with the pixels as float64: the same ids.
    again = adapter_engine.complete(
        tokens, image=pixels.astype(np.float64), max_new_tokens=len(greedy), temperature=0,
        ignore_eos=True,
    )
    assert again.ids == greedy


def test_image_file_bytes_and_rgb8_array_agree_with_the_cli(adapter_engine, case2, tmp_path):
    root, expected, _ = case2
    tokens = expected["tokens"]
    rgb = np.random.default_rng(3).integers(0, 256, size=(40, 32, 3), dtype=np.uint8)
    png = tmp_path / "image.png"
    png.write_bytes(png_bytes(rgb))
    out = tmp_path / "logits.safetensors"
    cli(
        "forward", "--model", root / "base", "--adapter", root / "adapter", "--image", png,
        "--prompt-ids", ",".join(map(str, tokens)), "--out", out,
    )
    want = read_safetensors(out)["logits"][-1]
    for image in (png, str(png), png.read_bytes(), rgb):
        session = adapter_engine.session()
        session.set_image(image)
        session.prefill(tokens)
        np.testing.assert_allclose(session.logits(), want, rtol=0, atol=1e-5)


def test_two_threads_on_two_sessions_match_one_at_a_time(engine):
    jobs = [
        dict(prompt=PROMPT, max_new_tokens=200, temperature=0, ignore_eos=True),
        dict(prompt="Lily had a dog", max_new_tokens=200, temperature=0.8, top_p=0.9, seed=3,
             ignore_eos=True),
    ]
    alone = [engine.generate(**job) for job in jobs]
    results = [None, None]
    spans = [None, None]

    def run(i):
        t0 = time.perf_counter()
        results[i] = engine.generate(**jobs[i])
        spans[i] = (t0, time.perf_counter())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    # While they run, this thread keeps running Python: the GIL is released.
    ticks = [time.perf_counter()]
    while any(t.is_alive() for t in threads):
        ticks.append(time.perf_counter())
    for t in threads:
        t.join()
    assert results == alone
    (a0, a1), (b0, b1) = spans
    assert max(a0, b0) < min(a1, b1), "the two generations did not overlap"
    longest_gap = max(b - a for a, b in zip(ticks, ticks[1:])) if len(ticks) > 1 else 0
    assert longest_gap < 0.5 * (max(a1, b1) - min(a0, b0)), "the GIL was held while generating"


def test_missing_model_folder_is_a_model_file_error_with_the_cli_message(tmp_path):
    missing = tmp_path / "no-such-model"
    proc = cli("generate", "--model", missing, "--prompt", "hi", check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("lav2: error: ")
    want = line[len("lav2: error: "):].replace("--model", "model")
    with pytest.raises(lav2.ModelFileError) as e:
        lav2.Engine(missing, device="cpu")
    assert str(e.value) == want
    assert e.value.kind == "model_file"
    assert isinstance(e.value, lav2.Error)


def test_ids_outside_the_vocabulary_are_bad_input(engine):
    for ids in ([1, 100000], [1, -1]):
        with pytest.raises(lav2.BadInputError, match="outside the vocabulary of 512 tokens"):
            engine.generate(ids, max_new_tokens=4)
    with pytest.raises(ValueError):
        engine.session().prefill([1, 512])
    with pytest.raises(lav2.BadInputError):
        engine.detokenize([700])


def test_wrong_pixel_shapes_are_bad_input(adapter_engine, engine):
    for shape in [(3, 27, 27), (1, 3, 28, 28), (28, 28, 3)]:
        with pytest.raises(lav2.BadInputError) as e:
            adapter_engine.session().set_image(np.zeros(shape, dtype=np.float32))
        assert e.value.kind == "bad_input"
    with pytest.raises(lav2.BadInputError, match="finite"):
        bad = np.zeros((3, 28, 28), dtype=np.float32)
        bad[0, 0, 0] = np.nan
        adapter_engine.session().set_image(bad)
    with pytest.raises(lav2.BadInputError, match="no vision tower"):
        engine.session().set_image(np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(lav2.BadInputError, match="no tokenizer"):
        adapter_engine.generate("hello", max_new_tokens=2)


def test_a_negative_temperature_is_bad_input_with_the_cli_message(engine, stories):
    proc = cli("generate", "--model", stories, "--prompt", "hi", "--temperature", -1, check=False)
    want = proc.stderr.strip().splitlines()[-1][len("lav2: error: "):].replace("--", "")
    with pytest.raises(lav2.BadInputError) as e:
        engine.generate(PROMPT, temperature=-1)
    assert str(e.value) == want
    with pytest.raises(lav2.BadInputError):
        engine.stream(PROMPT, temperature=-1)  # refused at once, not at the first token
    with pytest.raises(lav2.BadInputError, match="device"):
        lav2.Engine(REPO, device="tpu")
    with pytest.raises(lav2.BadInputError, match="template"):
        engine.generate(PROMPT, template="chatml")


def test_the_chat_example_streams_the_cli_text(stories):
    want = cli_generate(stories, "--prompt", PROMPT, "--temperature", 0, "--max-new-tokens", 30)
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "examples" / "python" / "chat.py"), "--model", str(stories),
            "--device", "cpu", "--temperature", "0", "--max-new-tokens", "30", PROMPT,
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == want["text"] + "\n"
    assert "30 tokens" in proc.stderr


def test_negative_counts_are_bad_input_naming_the_argument(engine, stories):
    with pytest.raises(lav2.BadInputError, match="max_new_tokens must be 0 or more, got -3"):
        engine.generate(PROMPT, max_new_tokens=-3)
    with pytest.raises(lav2.BadInputError, match="seed"):
        engine.generate(PROMPT, seed=-1)
    with pytest.raises(lav2.BadInputError, match="max_seq_len"):
        lav2.Engine(str(stories), device="cpu", max_seq_len=-1)
