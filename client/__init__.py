"""A client for classifyd's (and vLLM's / SGLang's) `POST /classify`: splits a large list
into requests, keeps a bounded number in flight over pooled keep-alive connections, retries
429/503 and lost connections with backoff (honouring Retry-After), and returns results in
input order; a text the server refuses alone comes back as a `Refused` in its place (with
errors="return"). Imports protocol/ (the wire structs) and pipeline/ (streaming, and finding
the refused text of a batch) only: no engine, no server, no torch.
"""

from client.async_client import AsyncClient, ClientOptions, ClientStats
from client.client import Client
from client.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClassifydError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from client.retry import RetryPolicy
from client.wire import Item, Refused
from protocol.classify import ClassifyData

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ClassifyData",
    "ClassifydError",
    "Client",
    "ClientOptions",
    "ClientStats",
    "InternalServerError",
    "Item",
    "NotFoundError",
    "OverloadedError",
    "Refused",
    "RequestTooLargeError",
    "RetryPolicy",
    "ServiceUnavailableError",
]
