"""The engine's exception tree, in the engine's own terms: a bad prompt is named by its index
in the call, a bad argument by its Python name. `server/errors.py` maps them to the wire."""

from __future__ import annotations

from typing import Self


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EngineError):
    """The call cannot run as given. `param` names the engine argument at fault by its Python
    name (`prompts`, `truncate_prompt_tokens`, `messages`, ...), or is None."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidPrompt(InvalidInput):
    """One prompt cannot be classified: `index` is its position in the call's prompts, and
    `reason` says what is wrong with it without naming it (callers name it their own way)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"Input {index} {reason}.", param="prompts")
        self.index = index
        self.reason = reason

    def at(self, index: int) -> Self:
        """The same error for a prompt that sits at `index` of a larger whole (a chunk of a
        stream, one group of a request)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.index = index
        clone.message = f"Input {index} {self.reason}."
        clone.args = (clone.message,)
        return clone


class EmptyPrompt(InvalidPrompt):
    """An empty text, a pair with an empty text, or an empty list of token ids: nothing for
    the model to read. `part` is the empty text of a pair (0 or 1), else None."""

    def __init__(self, index: int, *, part: int | None = None, token_ids: bool = False) -> None:
        if token_ids:
            reason = "is an empty list of token ids"
        elif part is None:
            reason = "is an empty string"
        else:
            reason = f"has an empty {'first' if part == 0 else 'second'} text"
        super().__init__(index, reason)
        self.part = part
        self.token_ids = token_ids


class InputTooLong(InvalidPrompt):
    """A prompt is longer than the model's maximum length and no truncation was asked."""

    def __init__(self, index: int, length: int, limit: int) -> None:
        super().__init__(
            index,
            f"has {length} tokens, more than the model's maximum length of {limit} tokens. "
            "Shorten it or set truncate_prompt_tokens",
        )
        self.length = length
        self.limit = limit


class Overloaded(EngineError):
    """Admission refused: taking these sequences would pass the in-flight limit."""

    def __init__(self, requested: int, in_flight: int, limit: int) -> None:
        super().__init__(
            f"The server is at capacity ({in_flight} of {limit} sequences in flight; this "
            f"request needs {requested}). Retry shortly."
        )
        self.requested = requested
        self.in_flight = in_flight
        self.limit = limit

    @classmethod
    def queue_full(cls, tokens: int, waiting: int, limit: int) -> Overloaded:
        error = cls(tokens, waiting, limit)
        error.message = (
            f"The waiting queue is full ({waiting} tokens waiting, limit {limit}; this request "
            f"adds {tokens}). Retry shortly."
        )
        error.args = (error.message,)
        return error


class EngineUnavailable(EngineError):
    """The engine is not started, is shutting down, or its worker died."""


class RequestTimeout(EngineUnavailable):
    """The request was not answered within --request-timeout; its queued work was dropped."""


class InferenceError(EngineError):
    """The model failed on the batch that held this request's prompts."""


class ModelLoadError(EngineError):
    """The model directory could not be loaded as a sequence classifier."""


class AdapterConflict(InvalidInput):
    """A LoRA adapter cannot be loaded as asked: its name is taken, or --max-loras is full."""


class AdapterNotFound(EngineError):
    """No LoRA adapter of that name is loaded (an unload of an unknown one)."""
