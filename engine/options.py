"""Options declared once, on the config dataclass that owns them.

    max_num_seqs: int = field(default=256, metadata=option("prompts per forward"))

The field's default (or default_factory) is the option's default; its metadata is what a
front end needs to offer it (help text, how the flag is spelt, how a list is written). The
command line (cli/options.py) derives its flags and CLASSIFYD_* variables from it and the
offline Classifier its keywords, so a new option is one field. The engine defines this
because every layer above it may import the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, Literal, get_type_hints

# --log-level's values, for every command that takes it.
LogLevel = Literal["debug", "info", "warning", "error"]
# How a tuple option is written on a command line; a CLASSIFYD_* variable is always
# comma-separated. "comma": one comma-separated argument; "words": the values after one flag;
# "repeat": the flag once per value.
Listed = Literal["comma", "words", "repeat"]

_KEY = "classifyd.option"


@dataclass(frozen=True)
class Spec:
    """What a field needs, besides its name, type and default, to be offered as an option."""

    help: str
    # The flag without "--"; None: the field's name with dashes.
    flag: str | None = None
    # A one-letter alias such as "-o".
    short: str | None = None
    listed: Listed = "comma"
    # A positional argument (no flag, no variable) instead of a --flag.
    positional: bool = False
    # False: an option of a server only, not of an offline run (the Classifier, `classify`).
    offline: bool = True
    # The help where an offline run gives the option another meaning.
    offline_help: str | None = None
    # What --help calls the default when the field's own is a placeholder (None, ()).
    shown: str | None = None


def option(
    help: str,
    *,
    flag: str | None = None,
    short: str | None = None,
    listed: Listed = "comma",
    positional: bool = False,
    offline: bool = True,
    offline_help: str | None = None,
    shown: str | None = None,
) -> Mapping[str, Spec]:
    """The metadata that makes a dataclass field an option (see `Spec`):

    max_num_seqs: int = field(default=256, metadata=option("prompts per forward"))
    """
    return {_KEY: Spec(help, flag, short, listed, positional, offline, offline_help, shown)}


@dataclass(frozen=True)
class Option:
    """One declared option of a config class, with its field's name, type and default."""

    name: str
    # The field's annotation, resolved (Literal, X | None, tuple[str, ...], ...).
    type: Any
    spec: Spec
    field: Field[Any]

    @property
    def flag(self) -> str:
        return self.spec.flag or self.name.replace("_", "-")

    def default(self) -> Any:
        """The default a config gets without the option; None when it is required."""
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return None


def options(cls: type, *, offline: bool = False) -> list[Option]:
    """The options `cls` declares, in field order; offline=True: only an offline run's."""
    hints = get_type_hints(cls)
    found = []
    for f in fields(cls):
        declared = f.metadata.get(_KEY)
        if isinstance(declared, Spec) and (declared.offline or not offline):
            found.append(Option(f.name, hints[f.name], declared, f))
    return found
