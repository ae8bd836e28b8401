"""The exceptions of lav2: one per kind of :class:`lav2.Error` (the Rust ``lav2::ErrorKind``)."""


class Error(Exception):
    """Any error lav2 reports; ``str(e)`` is the message the command line prints for the same
    fault, with options named as this package's arguments (``max_seq_len``, not
    ``--max-seq-len``). ``kind`` names the kind: ``bad_input``, ``model_file``, ``device``,
    ``out_of_memory`` or ``internal``."""

    kind = "internal"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BadInputError(Error, ValueError):
    """An argument is refused: an option's value, a token id outside the vocabulary, a prompt
    that does not fit the context, an image of the wrong size, a call made out of order."""

    kind = "bad_input"


class ModelFileError(Error):
    """A model, adapter, tokenizer or image file is missing, unreadable or malformed."""

    kind = "model_file"


class DeviceError(Error):
    """The device could not be opened or failed while running."""

    kind = "device"


class OutOfMemoryError(Error, MemoryError):
    """Host or device memory is short for what was asked."""

    kind = "out_of_memory"


class InternalError(Error):
    """A fault inside lav2 (a bug): please report it with the message."""

    kind = "internal"
