"""Reproducible text mixes for the benchmarks: same seed, same texts, on every machine.

`short`: review-like sentences of 3–60 words (about 33 tokens on average for a BERT
WordPiece vocabulary), the shape of the movie-review snippets the default model was trained
on. `longtail`: the same, with one text in twenty a 400-word document.
"""

from __future__ import annotations

import random

_OPENERS = (
    "the movie", "this film", "the plot", "the acting", "the new update", "our waiter",
    "the hotel room", "the battery", "customer service", "the ending", "the soundtrack",
    "the first half", "the director", "this phone", "the coffee", "the sequel", "the cast",
)  # fmt: skip
_VERBS = (
    "was", "is", "felt", "seemed", "turned out", "looked", "sounded", "became", "stayed",
)  # fmt: skip
_ADJECTIVES = (
    "great", "awful", "surprisingly good", "boring", "brilliant", "painfully slow", "lovely",
    "forgettable", "charming", "frustrating", "wonderful", "mediocre", "clever", "dull",
    "beautifully shot", "overlong", "genuinely funny", "predictable", "moving", "broken",
)  # fmt: skip
_TAILS = (
    "and i would watch it again", "but the dialogue never lands", "from start to finish",
    "even though the trailer promised more", "which is rare these days", "for a while",
    "and nobody seemed to care", "despite a strong opening", "as far as i can tell",
    "though the second act drags", "and the price was fair", "after the latest patch",
    "in every single scene", "compared with the original", "given the budget",
)  # fmt: skip
_FILLER = (
    "honestly", "really", "quite", "rather", "just", "still", "also", "perhaps", "simply",
    "somehow", "certainly", "mostly", "again", "finally", "clearly", "almost",
)  # fmt: skip


def _sentence(rng: random.Random, words: int) -> str:
    parts = [rng.choice(_OPENERS), rng.choice(_VERBS), rng.choice(_ADJECTIVES)]
    while sum(len(p.split()) for p in parts) < words:
        parts.append(rng.choice(_TAILS) if rng.random() < 0.5 else rng.choice(_FILLER))
    text = " ".join(parts)
    return " ".join(text.split()[:words]).capitalize() + "."


def short_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    # Skewed to short, like real review sentences: median ~27 words, a few near 60.
    return [
        _sentence(rng, min(60, max(3, int(rng.lognormvariate(3.3, 0.45))))) for _ in range(count)
    ]


def longtail_texts(count: int, seed: int = 0, long_words: int = 400, every: int = 20) -> list[str]:
    rng = random.Random(seed + 1)
    texts = short_texts(count, seed)
    for i in range(0, count, every):
        j = i + rng.randrange(every) if i + every <= count else i
        sentences = []
        while sum(len(s.split()) for s in sentences) < long_words:
            sentences.append(_sentence(rng, rng.randrange(10, 30)))
        texts[j] = " ".join(" ".join(sentences).split()[:long_words]) + "."
    return texts


MIXES = {"short": short_texts, "longtail": longtail_texts}
