"""Streaming helpers shared by the offline Classifier (engine/) and the client (client/): an
ordered, windowed, pipelined map over a stream of any length, and a background event loop
that lets blocking code drive async code. Imports nothing of ours."""

from pipeline.loop import LoopThread
from pipeline.ordered import ordered_chunks

__all__ = ["LoopThread", "ordered_chunks"]
