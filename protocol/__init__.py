"""Wire structs of classifyd: msgspec only, no torch, no Starlette."""
