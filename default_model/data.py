"""The VADER ground truth as labelled examples, the fixed held-out split, and seeded subsets."""

from __future__ import annotations

import hashlib
import html
import random
from dataclasses import dataclass, field

from default_model.errors import DefaultModelError
from default_model.recipe import Recipe
from default_model.sources import DOMAIN_FILES


@dataclass(frozen=True)
class Example:
    domain: str
    sentence_id: str
    rating: float
    text: str

    @property
    def label(self) -> int:
        return 1 if self.rating > 0 else 0


@dataclass
class Split:
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)


def parse_ground_truth(domain: str, raw: bytes) -> list[Example]:
    """Rows are `id<TAB>mean rating (-4..+4)<TAB>text`; neutral (0.0) rows are dropped.

    The files are mostly ASCII; the movie file holds UTF-8 (accented names, dashes), so lines
    are read as UTF-8 with latin-1 as the fallback for any that are not.
    """
    examples: list[Example] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            line = line_bytes.decode("latin-1")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DefaultModelError(f"{DOMAIN_FILES[domain]}:{number}: expected 3 fields")
        sentence_id, rating_text, text = parts
        try:
            rating = float(rating_text)
        except ValueError:
            raise DefaultModelError(
                f"{DOMAIN_FILES[domain]}:{number}: rating {rating_text!r} is not a number"
            ) from None
        if rating == 0.0:
            continue
        # The tweets keep HTML escapes (&amp;, &lt;3); clients will send the real characters.
        examples.append(Example(domain, sentence_id.strip(), rating, html.unescape(text.strip())))
    return examples


def is_heldout(text: str, fraction: float) -> bool:
    """The fixed split: a sentence is held out when the sha256 of its normalised text falls in
    the lowest `fraction` of the hash range.

    Hashing the text, not a row number or a seeded shuffle, keeps the split independent of the
    seed and file order, and puts duplicate sentences (a few dozen, some differing only in
    case) on the same side, so none is both trained on and tested on.
    """
    key = " ".join(text.casefold().split()).encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return bucket < fraction * 2.0**64


def seeded_subset(items: list[Example], limit: int | None, seed: int, tag: str) -> list[Example]:
    """`limit` of the items, chosen by the seed and `tag`, in their original order."""
    if limit is None or len(items) <= limit:
        return items
    rng = random.Random(f"{seed}:{tag}")
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]


def split_domain(examples: list[Example], recipe: Recipe) -> Split:
    split = Split()
    for example in examples:
        if is_heldout(example.text, recipe.holdout_fraction):
            split.heldout.append(example)
        else:
            split.train.append(example)
    return split


def domain_splits(raw: dict[str, bytes], recipe: Recipe) -> dict[str, Split]:
    """Every domain of the recipe parsed, split, and cut down to the recipe's subset sizes."""
    splits: dict[str, Split] = {}
    for domain in recipe.all_domains:
        split = split_domain(parse_ground_truth(domain, raw[domain]), recipe)
        split.train = seeded_subset(
            split.train, recipe.max_train_per_domain, recipe.seed, f"train:{domain}"
        )
        split.heldout = seeded_subset(
            split.heldout, recipe.max_eval_per_domain, recipe.seed, f"eval:{domain}"
        )
        splits[domain] = split
    return splits
