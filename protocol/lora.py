"""vLLM's run-time LoRA routes: `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter`.
A success is answered in plain text, as vLLM does; an error in vLLM's envelope."""

from __future__ import annotations

import msgspec


class LoadLoRAAdapterRequest(msgspec.Struct):
    # Empty when missing: the route answers vLLM's own sentence for it, not a schema error.
    lora_name: str = ""
    # A local adapter directory, or a Hub id.
    lora_path: str = ""
    # Replace an adapter of that name that is already loaded, instead of refusing.
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(msgspec.Struct):
    lora_name: str = ""
    # vLLM's internal id; accepted and not used (adapters are named here).
    lora_int_id: int | None = None


load_lora_decoder = msgspec.json.Decoder(LoadLoRAAdapterRequest)
unload_lora_decoder = msgspec.json.Decoder(UnloadLoRAAdapterRequest)
