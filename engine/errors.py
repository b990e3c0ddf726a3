"""The engine's exception tree. `server/errors.py` maps each class to one HTTP status."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(EngineError):
    """The prompts cannot be classified as given (empty text, bad token id, bad option)."""


class InputTooLong(InvalidInput):
    """A prompt is longer than the model's maximum length and no truncation was asked."""

    def __init__(self, index: int, length: int, limit: int) -> None:
        super().__init__(
            f"Input {index} has {length} tokens, more than the model's maximum length of "
            f"{limit} tokens. Shorten it or set truncate_prompt_tokens.",
            param="input_tokens",
        )
        self.index = index
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
