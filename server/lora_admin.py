"""`POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter`: LoRA adapters loaded and
unloaded at run time, as vLLM answers them. Off unless the server runs with
--allow-runtime-lora-updating (or vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); vLLM then has
no such routes, so they answer 404 as an unknown path does. Behind the API key like any route."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import PlainTextResponse, Response

from engine.adapters import AdapterSpec
from engine.errors import AdapterConflict, ModelLoadError
from protocol.codec import decode
from protocol.lora import load_lora_decoder, unload_lora_decoder
from server.errors import ApiError, RouterError
from server.http import Call
from server.state import AppState

ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
# Answered 404 while the flag is off, as vLLM, which then has no such routes.
PATHS = frozenset({"/v1/load_lora_adapter", "/v1/unload_lora_adapter"})


def runtime_updates_allowed(state: AppState) -> bool:
    """The flag, or vLLM's variable set as vLLM reads it ("1" or "true", any case)."""
    env = os.environ.get(ENV, "0").strip().lower() in ("1", "true")
    return state.config.allow_runtime_lora_updating or env


def _invalid(message: str) -> ApiError:
    # vLLM's type for these refusals.
    return ApiError(400, "InvalidUserInput", message)


async def load_lora_adapter(body: bytes, state: AppState, call: Call) -> Response:
    if not runtime_updates_allowed(state):
        raise RouterError(404, "Not Found")
    req = decode(load_lora_decoder, body)
    name, path = req.lora_name, req.lora_path
    if not name or not path:
        raise _invalid("Both 'lora_name' and 'lora_path' must be provided.")
    call.lora_name = name
    try:
        await state.engine.load_adapter(AdapterSpec(name, path), inplace=req.load_inplace)
    except AdapterConflict as exc:
        raise _invalid(exc.message) from exc
    except ModelLoadError as exc:
        # vLLM: a path with no adapter is a 404, any other failure to load a 400.
        missing = not Path(path).expanduser().exists()
        status, type_ = (404, "NotFoundError") if missing else (400, "BadRequestError")
        raise ApiError(status, type_, exc.message) from exc
    return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")


async def unload_lora_adapter(body: bytes, state: AppState, call: Call) -> Response:
    if not runtime_updates_allowed(state):
        raise RouterError(404, "Not Found")
    req = decode(unload_lora_decoder, body)
    if not req.lora_name:
        raise _invalid("'lora_name' needs to be provided to unload a LoRA adapter.")
    call.lora_name = req.lora_name
    # An unknown name is the engine's AdapterNotFound: 404, vLLM's sentence.
    await state.engine.unload_adapter(req.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")
