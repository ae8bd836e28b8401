"""Type stubs of the native module (see lav2/__init__.py for the documented API)."""

from typing import List, Optional, Sequence, Union

__version__: str

class Completion:
    text: str
    ids: List[int]
    stop_reason: str

class TokenStream:
    def __iter__(self) -> "TokenStream": ...
    def __next__(self) -> str: ...
    def close(self) -> None: ...
    @property
    def completion(self) -> Optional[Completion]: ...

class Session:
    def set_image_file(self, path: str) -> None: ...
    def set_image_bytes(self, data: bytes) -> None: ...
    def set_image_rgb8(self, data: bytes, width: int, height: int) -> None: ...
    def set_image_pixels(self, data: bytes, shape: List[int]) -> None: ...
    def prefill_ids(self, ids: List[int]) -> None: ...
    def prefill_text(self, text: str) -> None: ...
    def step(self, temperature: float = 0.0, top_p: float = 0.75) -> int: ...
    def logits(self) -> bytearray: ...
    def complete(
        self,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> Completion: ...
    def stream(
        self,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.75,
        seed: int = 0,
        ignore_eos: bool = False,
    ) -> TokenStream: ...
    def reset(self) -> None: ...
    @property
    def tokens(self) -> List[int]: ...
    def __len__(self) -> int: ...

class Engine:
    def __init__(
        self,
        model: str,
        adapter: Optional[str] = None,
        device: str = "auto",
        quant: Optional[str] = None,
        max_seq_len: Optional[int] = None,
        tokenizer: Optional[str] = None,
        skip_finite_check: bool = False,
    ) -> None: ...
    def session(self) -> Session: ...
    def tokenize(self, text: str, bos: bool = True) -> List[int]: ...
    def detokenize(self, ids: List[int]) -> str: ...
    def prompt_ids(
        self, prompt: Union[str, Sequence[int]], template: str = "auto", context: Optional[str] = None
    ) -> List[int]: ...
    vocab_size: int
    context_len: int
    bos_id: int
    eos_id: int
    device: str
    has_tokenizer: bool
    has_adapter: bool
    image_size: Optional[int]
    default_template: str
    notices: List[str]
