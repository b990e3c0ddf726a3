"""Async helpers shared by the offline Classifier (offline/) and the client (client/): an
ordered, windowed, pipelined map over a stream of any length, the search for the items that
fail a batch, and a background event loop that lets blocking code drive async code. Imports
nothing of ours."""

from pipeline.isolate import SOMEONE, Blame, ItemFailed, isolate
from pipeline.loop import LoopThread
from pipeline.ordered import ordered_chunks

__all__ = ["SOMEONE", "Blame", "ItemFailed", "LoopThread", "isolate", "ordered_chunks"]
