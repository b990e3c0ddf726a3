"""Kept for imports from before the move: the definitions live in `engine/activation.py`,
shared by the server and the offline Classifier."""

from engine.activation import Activation, activate, argmax, default_activation, sigmoid, softmax

__all__ = ["Activation", "activate", "argmax", "default_activation", "sigmoid", "softmax"]
