from __future__ import annotations

# The one live uvicorn of the server tests, on a tiny BERT.
from tests.server.conftest import live_url

__all__ = ["live_url"]
