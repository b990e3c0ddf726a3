"""The classifyd engine: admission, tokenization, scheduling and the model worker.

No Starlette and no wire structs here; torch is touched only inside the worker thread.
"""

from engine.config import EngineConfig
from engine.engine import ClassifyOptions, ClassifyResult, Engine, Prompts
from engine.errors import (
    EmptyPrompt,
    EngineError,
    EngineUnavailable,
    InferenceError,
    InputTooLong,
    InvalidInput,
    InvalidPrompt,
    ModelLoadError,
    Overloaded,
    RequestTimeout,
)
from engine.model.runner import ModelInfo

__all__ = [
    "ClassifyOptions",
    "ClassifyResult",
    "EmptyPrompt",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineUnavailable",
    "InferenceError",
    "InputTooLong",
    "InvalidInput",
    "InvalidPrompt",
    "ModelInfo",
    "ModelLoadError",
    "Overloaded",
    "Prompts",
    "RequestTimeout",
]
