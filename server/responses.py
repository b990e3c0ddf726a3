"""A Starlette response whose body is a msgspec struct, encoded by the shared encoder."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from protocol.codec import encode


class MsgspecResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)
