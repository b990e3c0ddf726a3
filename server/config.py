"""ServerConfig: the HTTP layer's own knobs (the engine's are in EngineConfig)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    # Bearer keys; empty: no authentication.
    api_keys: tuple[str, ...] = ()
    # Prompts in one request; more is a 400 (a client should split its work).
    max_client_batch_size: int = 512
    # Request body cap; more is a 413 before the body is even read whole.
    max_body_bytes: int = 8 * 1024 * 1024
    # Truncate over-long prompts to the model's maximum instead of refusing them.
    auto_truncate: bool = False

    def __post_init__(self) -> None:
        if self.max_client_batch_size < 1:
            raise ValueError("max_client_batch_size must be at least 1")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if any(not key for key in self.api_keys):
            raise ValueError("an API key must not be empty")
