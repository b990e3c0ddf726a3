from __future__ import annotations

# The live `classifyd serve` of the server tests (a child process), on the tiny BERT.
from tests.server.conftest import live_url

__all__ = ["live_url"]
