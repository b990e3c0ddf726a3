"""Starting and stopping a server under measurement, and the batch means its metrics give."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest

from bench.serving import batch_means, free_port, metric_sums, start_server, stop_server
from tests.builders import sentences

# Answers /health only: enough for start_server, and SIGINT ends it as it ends classifyd.
_HEALTH_ONLY = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_start_waits_for_health_and_stop_interrupts(tmp_path: Path) -> None:
    script = tmp_path / "health.py"
    script.write_text(_HEALTH_ONLY)
    port = free_port()
    proc = start_server([sys.executable, str(script), str(port)], f"http://127.0.0.1:{port}")
    try:
        assert proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        stop_server(proc)
    # Ended by the SIGINT itself, not by the kill that follows a server that ignores it.
    assert proc.returncode == -signal.SIGINT


def test_a_server_that_exits_first_is_reported_with_its_stderr() -> None:
    cmd = [sys.executable, "-c", "import os, sys; sys.exit('no model: ' + os.environ['MARK'])"]
    with pytest.raises(RuntimeError, match="no model: from env"):
        start_server(cmd, f"http://127.0.0.1:{free_port()}", env={"MARK": "from env"})


def test_the_batch_means_of_a_request(live_url: str) -> None:
    before = metric_sums(live_url)
    assert set(before) == {
        "classifyd_batch_padded_tokens_sum",
        "classifyd_batch_real_tokens_sum",
        "classifyd_batch_size_sum",
        "classifyd_batch_size_count",
    }
    texts = sentences(4)
    assert httpx.post(f"{live_url}/classify", json={"input": texts}).status_code == 200
    means = batch_means(before, metric_sums(live_url))
    assert means["mean_batch_size"] is not None and 1 <= means["mean_batch_size"] <= len(texts)
    assert means["padded_over_real"] is not None and means["padded_over_real"] >= 1
    # Nothing ran between two readings: no means rather than a division by zero.
    assert batch_means(before, before) == {"padded_over_real": None, "mean_batch_size": None}
