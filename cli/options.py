"""Flags from the config dataclasses' options (engine/options.py), and the configs back from
the parsed flags.

Each option becomes --flag, defaulting to $CLASSIFYD_FLAG, then to the field's default; its
help ends "(default: X; env CLASSIFYD_FLAG)". How a value is read follows the field's type:
booleans take an optional true/false (a bare --flag is true), Literal types are choices,
tuples are lists (comma-separated in a variable), dicts JSON objects, callables
module:function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import types
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from engine.options import Option, options

C = TypeVar("C")
# An ArgumentParser or one of its argument groups.
Target = argparse.ArgumentParser | argparse._ArgumentGroup


def env_name(flag: str) -> str:
    return "CLASSIFYD_" + flag.upper().replace("-", "_")


def _truth(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _import_hook(text: str) -> Callable[..., Any]:
    module, _, name = text.partition(":")
    try:
        hook: Callable[..., Any] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot import {text!r}: {exc}") from exc
    return hook


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


def _without_none(kind: Any) -> Any:
    if get_origin(kind) in (Union, types.UnionType):
        rest = [a for a in get_args(kind) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _reading(opt: Option) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """(text → value, further add_argument keywords) for the option's type."""
    kind = _without_none(opt.type)
    origin = get_origin(kind)
    if kind is bool:
        return _truth, {"nargs": "?", "const": True}
    if origin is Literal:
        return str, {"choices": list(get_args(kind))}
    if origin is tuple:
        if opt.spec.listed == "words":
            return str, {"nargs": "+"}
        if opt.spec.listed == "repeat":
            return str, {"action": "append"}
        return _tokens, {}
    if kind is dict or origin is dict:
        return _json_object, {}
    if origin is Callable:
        return _import_hook, {}
    if kind in (int, float, str):
        return kind, {}
    raise TypeError(f"{opt.name}: no command-line form for {opt.type}")


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def add_options(target: Target, cls: type, *, offline: bool = False) -> None:
    """Add the options `cls` declares (offline=True: only an offline run's, with their
    offline help) to a parser or an argument group."""
    for opt in options(cls, offline=offline):
        _add(target, opt, offline)


def _add(target: Target, opt: Option, offline: bool) -> None:
    help_text = (offline and opt.spec.offline_help) or opt.spec.help
    if opt.spec.positional:
        target.add_argument(opt.name, metavar=opt.flag.upper(), help=help_text)
        return
    parse, extra = _reading(opt)
    env = env_name(opt.flag)
    default = opt.default()
    raw = os.environ.get(env)
    # One value per argument on the command line; comma-separated in a variable.
    per_argument = extra.get("nargs") == "+" or extra.get("action") == "append"
    value: Any = default
    if raw is not None:
        value = [v for v in raw.split(",") if v] if per_argument else parse(raw)
    elif per_argument:
        # argparse appends to a list default; the config gets a tuple back (see `values`).
        value = list(value)
    if "choices" not in extra:
        extra["metavar"] = opt.flag.upper().replace("-", "_")
    target.add_argument(
        *([opt.spec.short] if opt.spec.short else []),
        f"--{opt.flag}",
        dest=opt.name,
        default=value,
        type=parse,
        help=f"{help_text} (default: {opt.spec.shown or _shown(default)}; env {env})",
        **extra,
    )


def values(cls: type, args: argparse.Namespace, *, offline: bool = False) -> dict[str, Any]:
    """{field: parsed value} for the options of `cls` (offline=True: an offline run's)."""
    found = {}
    for opt in options(cls, offline=offline):
        value = getattr(args, opt.name)
        found[opt.name] = tuple(value) if isinstance(value, list) else value
    return found


def build(cls: type[C], args: argparse.Namespace, **given: Any) -> C:
    """A `cls` from the parsed flags; `given` replaces or adds fields (a resolved model)."""
    return cls(**{**values(cls, args), **given})
