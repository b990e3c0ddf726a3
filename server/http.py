"""What every model route does around its work: body cap, request id, disconnects, metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from server.errors import ApiError, bad_request, not_found, to_response
from server.logs import ACCESS
from server.state import AppState, state_of


@dataclass
class Call:
    """One request's identity and figures, filled in as the handler learns them."""

    request_id: str
    prompts: int = 0
    tokens: int = 0
    # Milliseconds by phase, as in the x-*-time headers.
    timings: dict[str, float] = field(default_factory=dict)

    def adopt(self, request_id: str | None, rid: str | None = None) -> None:
        """Take the body's id (`request_id`, else `rid`) over the header's."""
        for name, value in (("request_id", request_id), ("rid", rid)):
            if value:
                # It is echoed in a header: refuse what a header cannot carry.
                if len(value) > 256 or not value.isascii() or not value.isprintable():
                    raise bad_request(
                        f"`{name}` must be printable ASCII of at most 256 characters.", name
                    )
                self.request_id = value
                return


Handler = Callable[[bytes, AppState, Call], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST model route: read the body (capped), turn errors into the envelope,
    cancel the work when the client disconnects, count the outcome."""

    async def route(request: Request) -> Response:
        began = time.perf_counter()
        state = state_of(request)
        call = Call(request.headers.get("x-request-id") or uuid.uuid4().hex)
        try:
            # The whole body first: the disconnect watcher must only ever see the disconnect.
            body = await read_body(request, state.config.max_body_bytes)
            response = await until_disconnect(request, handler(body, state, call))
        except ClientDisconnect:
            # The client went away while sending its body: nobody to answer.
            response = Response(status_code=499)
        except Exception as exc:
            response = to_response(exc, call.request_id)
        response.headers.setdefault("x-request-id", call.request_id)
        status = response.status_code
        outcome = "success" if status < 400 else "cancelled" if status == 499 else "error"
        state.engine.metrics.requests.labels(outcome, str(status)).inc()
        ACCESS.info(
            "%s %s %d",
            request.method,
            request.url.path,
            status,
            extra={
                "request_id": call.request_id,
                "status": status,
                "path": request.url.path,
                "prompts": call.prompts,
                "tokens": call.tokens,
                "ms": round((time.perf_counter() - began) * 1000, 3),
                **{f"{phase}_ms": value for phase, value in call.timings.items()},
            },
        )
        return response

    return route


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestTooLargeError", f"The request body is larger than {limit} bytes.")


def check_model(state: AppState, model: str | None) -> str:
    """The served name to answer with; 404 for a name this server does not serve."""
    if model is None:
        return state.names[0]
    if model not in state.names:
        raise not_found(f"The model `{model}` does not exist.")
    return model


async def until_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Run `work`, cancelling it if the client goes away first.

    Neither uvicorn nor Starlette cancels a handler whose client disconnected; without this,
    an abandoned request would still occupy the model. Cancelling reaches the engine, whose
    futures are cancelled, so the scheduler drops those prompts before they are batched.
    """
    handler = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((handler, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if handler.done():
        return handler.result()
    handler.cancel()
    # Nobody is listening any more; 499 (nginx's "client closed request") is only for metrics.
    return Response(status_code=499)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
