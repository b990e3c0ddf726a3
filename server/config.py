"""ServerConfig: the HTTP server's own knobs (the engine's are in EngineConfig), each also a
flag of `classifyd serve` (engine/options.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.options import LogLevel, option

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata=option("address to listen on"))
    port: int = field(default=8000, metadata=option("port to listen on"))
    # Empty: no authentication.
    api_keys: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "accepted bearer key; repeat for several (env: comma-separated); every route but "
            "/health, /ready, /ping and /metrics then needs `Authorization: Bearer <key>`",
            flag="api-key",
            listed="repeat",
        ),
    )
    # A client should split its work rather than send one huge request.
    max_client_batch_size: int = field(
        default=512, metadata=option("inputs per request; more is a 400")
    )
    # Refused before the body is even read whole.
    max_body_bytes: int = field(
        default=8 * 1024 * 1024, metadata=option("request body limit in bytes; more is a 413")
    )
    auto_truncate: bool = field(
        default=False,
        metadata=option(
            "truncate over-long prompts to the maximum length instead of refusing them"
        ),
    )
    # vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING=True also turns it on (server/lora_admin.py).
    allow_runtime_lora_updating: bool = field(
        default=False,
        metadata=option(
            "answer POST /v1/load_lora_adapter and /v1/unload_lora_adapter (needs --enable-lora)"
        ),
    )
    log_level: LogLevel = field(default="info", metadata=option("logging level"))
    log_format: LogFormat = field(default="text", metadata=option("log lines as text or JSON"))
    shutdown_timeout: float = field(
        default=30.0,
        metadata=option("seconds a SIGTERM drain waits for admitted work before exiting"),
    )

    def __post_init__(self) -> None:
        if self.max_client_batch_size < 1:
            raise ValueError("max_client_batch_size must be at least 1")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if any(not key for key in self.api_keys):
            raise ValueError("an API key must not be empty")
