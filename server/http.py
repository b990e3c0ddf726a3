"""What every model route does around its work: body cap, request id, disconnects, metrics."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.errors import ApiError, ErrorMapper, bad_request, not_found, to_response
from server.logs import ACCESS
from server.state import AppState, state_of

_id_counter = itertools.count()
_id_prefix = uuid.uuid4().hex[:16]


def _new_id_prefix() -> None:
    global _id_prefix
    _id_prefix = uuid.uuid4().hex[:16]


# A forked child draws its own prefix: its counter starts where the parent's was.
os.register_at_fork(after_in_child=_new_id_prefix)


def new_request_id() -> str:
    """32 hex digits, unique across processes: a random prefix drawn once per process, then
    a counter, so the event loop does not read the OS's random source for every request."""
    return f"{_id_prefix}{next(_id_counter):016x}"


@dataclass
class Call:
    """One request's identity and figures, filled in as the handler learns them."""

    request_id: str
    prompts: int = 0
    tokens: int = 0
    # Milliseconds by phase, as in the x-*-time headers.
    timings: dict[str, float] = field(default_factory=dict)
    # The LoRA adapter that answered (vLLM's `lora_name`); None: the base model.
    lora_name: str | None = None

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


class ModelRoute:
    """A POST model route, as a plain ASGI app: read the body (capped), turn errors into the
    envelope, cancel the work when the client disconnects, count the outcome.

    A plain ASGI app, not an `async def route(request)`: every error here already becomes a
    response, so Starlette's request/response adapter and exception layers would only cost
    time on the hottest path.
    """

    def __init__(self, handler: Handler, errors: ErrorMapper = to_response) -> None:
        self.handler = handler
        self.errors = errors
        self.__name__ = handler.__name__  # Route names itself after its endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        began = time.perf_counter()
        state = state_of(request)
        call = Call(request.headers.get("x-request-id") or new_request_id())
        try:
            # The whole body first: the disconnect watcher must only ever see the disconnect.
            body = await read_body(request, state.config.max_body_bytes)
            response = await until_disconnect(request, self.handler(body, state, call))
        except ClientDisconnect:
            # The client went away while sending its body: nobody to answer.
            response = Response(status_code=499)
        except Exception as exc:
            response = self.errors(exc, call.request_id)
        response.headers.setdefault("x-request-id", call.request_id)
        status = response.status_code
        state.metrics.answered(status)
        if ACCESS.isEnabledFor(logging.INFO):  # the fields cost time even when not logged
            path = request.scope["path"]
            ACCESS.info(
                "%s %s %d",
                request.method,
                path,
                status,
                extra={
                    "request_id": call.request_id,
                    "status": status,
                    "path": path,
                    "prompts": call.prompts,
                    "tokens": call.tokens,
                    "ms": round((time.perf_counter() - began) * 1000, 3),
                    **{f"{phase}_ms": value for phase, value in call.timings.items()},
                    **({"lora_name": call.lora_name} if call.lora_name else {}),
                },
            )
        return response


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
        from server.adapters import adapter_named

        if adapter_named(state, model) is not None:
            raise bad_request(
                f"`{model}` is a LoRA adapter; this route answers for the base model only "
                "(adapters classify on /classify and /v1/classify).",
                "model",
            )
        raise not_found(f"The model `{model}` does not exist.")
    return model


async def until_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Run `work` in this task, cancelling it if the client goes away first.

    Neither uvicorn nor Starlette cancels a handler whose client disconnected; without this,
    an abandoned request would still occupy the model. Cancelling reaches the engine, whose
    futures are cancelled, so the scheduler drops those prompts before they are batched.
    The work runs in the request's own task and one watcher task cancels it, which costs
    the event loop less than running it in a second task and waiting on both.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher = _Watcher(request, task)
    watching = asyncio.ensure_future(watcher.run())
    try:
        return await work
    except asyncio.CancelledError:
        if not watcher.fired:
            raise  # cancelled by someone else (shutdown): not ours to swallow
        task.uncancel()
        # Nobody is listening any more; 499 (nginx's "client closed request") is only for
        # metrics.
        return Response(status_code=499)
    finally:
        watching.cancel()


class _Watcher:
    """Waits for the client's disconnect, then cancels the request's task."""

    def __init__(self, request: Request, task: asyncio.Task[Any]) -> None:
        self.request = request
        self.task = task
        self.fired = False

    async def run(self) -> None:
        while (await self.request.receive())["type"] != "http.disconnect":
            pass
        self.fired = True
        self.task.cancel()
