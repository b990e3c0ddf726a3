"""A client for classifyd's (and vLLM's / SGLang's) `POST /classify`: splits a large list
into requests, keeps a bounded number in flight over pooled keep-alive connections, retries
429/503 and lost connections with backoff (honouring Retry-After), and returns results in
input order. Imports protocol/ (the wire structs) and pipeline/ (the streaming helper) only:
no engine, no server, no torch.
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
from client.wire import Failed, Item
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
    "Failed",
    "InternalServerError",
    "Item",
    "NotFoundError",
    "OverloadedError",
    "RequestTooLargeError",
    "RetryPolicy",
    "ServiceUnavailableError",
]
