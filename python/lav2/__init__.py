"""lav2: LLaMA-Adapter V2 models from Python, on lav2's CPU reference or its CUDA kernels.

>>> import lav2
>>> engine = lav2.Engine("stories260K", device="cpu")
>>> print(engine.generate("Once upon a time", max_new_tokens=30, temperature=0))
>>> for piece in engine.stream("Once upon a time", max_new_tokens=30):
...     print(piece, end="", flush=True)

An :class:`Engine` loads a model (and adapter) once; each :class:`Session` is one
conversation on it (an image, a prompt, tokens stepped or streamed). Every call that runs
the model releases the GIL, so sessions of one engine can run on several threads at once.
Errors are :class:`Error` subclasses whose message is the command line's.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import numpy as np

from . import _lav2
from ._errors import (
    BadInputError,
    DeviceError,
    Error,
    InternalError,
    ModelFileError,
    OutOfMemoryError,
)
from ._lav2 import Completion, TokenStream

__version__ = _lav2.__version__

__all__ = [
    "Engine",
    "Session",
    "Completion",
    "TokenStream",
    "Error",
    "BadInputError",
    "ModelFileError",
    "DeviceError",
    "OutOfMemoryError",
    "InternalError",
]

PathLike = Union[str, "os.PathLike[str]"]
Prompt = Union[str, Sequence[int]]
ImageInput = Union[PathLike, bytes, bytearray, memoryview, np.ndarray]


class Engine:
    """A loaded LLaMA-Adapter V2 model (base, adapter, tokenizer), its weights on the device.

    ``device``: ``"auto"`` (a CUDA GPU when one is usable, else the CPU, said in
    :attr:`notices`), ``"cuda"`` or ``"cpu"``. ``quant``: ``None``/``"f16"`` (as loaded),
    ``"int8"`` or ``"int4"``, quantized at load. ``max_seq_len``: the context length of every
    session (default: the model's, lowered to what fits). ``tokenizer``: a ``tokenizer.json``
    (default: the model folder's, when it has one; without one, prompts are token ids).
    """

    def __init__(
        self,
        model: PathLike,
        adapter: Optional[PathLike] = None,
        device: str = "auto",
        quant: Optional[str] = None,
        max_seq_len: Optional[int] = None,
        tokenizer: Optional[PathLike] = None,
        skip_finite_check: bool = False,
    ) -> None:
        self._native = _lav2.Engine(
            os.fspath(model),
            None if adapter is None else os.fspath(adapter),
            device,
            quant,
            max_seq_len,
            None if tokenizer is None else os.fspath(tokenizer),
            skip_finite_check,
        )

    def session(self) -> "Session":
        """A new conversation: its own KV cache, this engine's weights."""
        return Session(self)

    def prompt_ids(
        self, prompt: Prompt, template: str = "auto", context: Optional[str] = None
    ) -> List[int]:
        """The ids a prompt runs as: a str is BOS then the text in ``template`` (``"auto"``:
        alpaca with an adapter or a ``context``, else the text as it is, as the command line);
        a list of ints is used as given."""
        if not isinstance(prompt, str):
            prompt = [int(i) for i in prompt]
        return self._native.prompt_ids(prompt, template, context)

    def _start(
        self,
        prompt: Prompt,
        image: Optional[ImageInput],
        template: str,
        context: Optional[str],
    ) -> "Session":
        ids = self.prompt_ids(prompt, template, context)
        session = self.session()
        if image is not None:
            session.set_image(image)
        session.prefill(ids)
        return session

    def complete(
        self,
        prompt: Prompt,
        image: Optional[ImageInput] = None,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        template: str = "auto",
        context: Optional[str] = None,
        ignore_eos: bool = False,
    ) -> Completion:
        """As :meth:`generate`, returning the :class:`Completion` (text, ids, stop_reason)."""
        session = self._start(prompt, image, template, context)
        return session.complete(max_new_tokens, temperature, top_p, seed, ignore_eos)

    def generate(
        self,
        prompt: Prompt,
        image: Optional[ImageInput] = None,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        template: str = "auto",
        context: Optional[str] = None,
        ignore_eos: bool = False,
    ) -> str:
        """The text generated after ``prompt`` (and ``image``): what ``lav2 generate`` prints
        for the same arguments. ``temperature=0`` is greedy; otherwise top-p sampling with
        random numbers from ``seed``."""
        return self.complete(
            prompt, image, max_new_tokens, temperature, top_p, seed, template, context, ignore_eos
        ).text

    def stream(
        self,
        prompt: Prompt,
        image: Optional[ImageInput] = None,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        template: str = "auto",
        context: Optional[str] = None,
        ignore_eos: bool = False,
    ) -> TokenStream:
        """As :meth:`generate`, as an iterator of text pieces, one token per step (a piece may
        be empty: a character of several byte tokens comes with its last one). The pieces add
        up to :meth:`generate`'s text; ``.completion`` holds the result once exhausted."""
        session = self._start(prompt, image, template, context)
        return session.stream(max_new_tokens, temperature, top_p, seed, ignore_eos)

    def tokenize(self, text: str, bos: bool = True) -> List[int]:
        """Token ids of ``text``, after the BOS id when ``bos``."""
        return self._native.tokenize(text, bos)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (special tokens such as BOS left out)."""
        return self._native.detokenize([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self._native.vocab_size

    @property
    def context_len(self) -> int:
        """Tokens a session holds: prompt and generated text together."""
        return self._native.context_len

    @property
    def bos_id(self) -> int:
        return self._native.bos_id

    @property
    def eos_id(self) -> int:
        return self._native.eos_id

    @property
    def device(self) -> str:
        """One line naming the device the engine runs on."""
        return self._native.device

    @property
    def has_tokenizer(self) -> bool:
        return self._native.has_tokenizer

    @property
    def has_adapter(self) -> bool:
        return self._native.has_adapter

    @property
    def image_size(self) -> Optional[int]:
        """The side of the square image the vision tower takes; None without one."""
        return self._native.image_size

    @property
    def default_template(self) -> str:
        """``"alpaca"`` with an adapter, else ``"none"`` (the command line's default)."""
        return self._native.default_template

    @property
    def notices(self) -> List[str]:
        """What the engine did at load that its user should know (a CPU fallback, a lowered
        context)."""
        return self._native.notices

    def __repr__(self) -> str:
        return f"lav2.Engine(device={self.device!r}, vocab_size={self.vocab_size})"


class Session:
    """One conversation on an :class:`Engine`: :meth:`set_image` (adapters with a vision
    tower), then :meth:`prefill` (one or more times), then :meth:`step` / :meth:`generate` /
    :meth:`stream` and :meth:`logits` in any mix; :meth:`reset` starts over."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._native = engine._native.session()

    def set_image(self, image: ImageInput) -> None:
        """The image the vision tower sees: a path to a JPEG/PNG file, its bytes, a uint8
        ``[H, W, 3]`` RGB array (preprocessed as CLIP does), or a float32 ``[3, S, S]`` array of
        pixels already normalized (in the adapter's channel order)."""
        native = self._native
        if isinstance(image, (str, os.PathLike)):
            native.set_image_file(os.fspath(image))
        elif isinstance(image, (bytes, bytearray, memoryview)):
            native.set_image_bytes(bytes(image))
        else:
            array = np.asarray(image)
            if array.dtype == np.uint8:
                if array.ndim != 3 or array.shape[2] != 3:
                    raise BadInputError(
                        "a uint8 image must be [height, width, 3] (RGB), got shape "
                        f"[{', '.join(map(str, array.shape))}]"
                    )
                height, width = array.shape[:2]
                native.set_image_rgb8(np.ascontiguousarray(array).tobytes(), width, height)
            elif np.issubdtype(array.dtype, np.floating):
                pixels = np.ascontiguousarray(array, dtype=np.float32)
                native.set_image_pixels(pixels.tobytes(), list(pixels.shape))
            else:
                raise BadInputError(
                    "an image is a path, encoded bytes, a uint8 [H, W, 3] array or float32 "
                    f"[3, S, S] pixels; got {type(image).__name__} of dtype {array.dtype}"
                )

    def prefill(self, prompt: Prompt) -> None:
        """Runs the prompt after what the session holds: a str is its tokens (after BOS when
        the session is empty; no template, see :meth:`Engine.prompt_ids`), a list of ints is
        used as given."""
        if isinstance(prompt, str):
            self._native.prefill_text(prompt)
        else:
            self._native.prefill_ids([int(i) for i in prompt])

    def step(self, temperature: float = 0.0, top_p: float = 0.75) -> int:
        """Picks the next token (greedy at temperature 0) and returns its id."""
        return self._native.step(temperature, top_p)

    def logits(self) -> np.ndarray:
        """The logits of the next position, float32 ``[vocab_size]``."""
        return np.frombuffer(self._native.logits(), dtype=np.float32)

    def complete(
        self,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> Completion:
        """Generates after what the session holds: the :class:`Completion`."""
        return self._native.complete(max_new_tokens, temperature, top_p, seed, ignore_eos)

    def generate(
        self,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> str:
        """Generates after what the session holds: the text."""
        return self.complete(max_new_tokens, temperature, top_p, seed, ignore_eos).text

    def stream(
        self,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> TokenStream:
        """As :meth:`generate`, as an iterator of text pieces, one token per ``next``. Until
        it is exhausted or closed, other calls on the session are refused."""
        return self._native.stream(max_new_tokens, temperature, top_p, seed, ignore_eos)

    def reset(self) -> None:
        """Forgets the image, the prompt and everything generated."""
        self._native.reset()

    @property
    def tokens(self) -> List[int]:
        """The tokens so far: prompt and generated."""
        return self._native.tokens

    def __len__(self) -> int:
        return len(self._native)
