"""The offline API: the engine without HTTP, for texts already in hand."""

from offline.classifier import (
    AsyncClassifier,
    Classification,
    Classifier,
    ClassifierOptions,
    Failed,
)

__all__ = ["AsyncClassifier", "Classification", "Classifier", "ClassifierOptions", "Failed"]
