"""--chat-template: where the template comes from, and a (query, document) pair rendered with it.

The value is resolved as vLLM resolves its --chat-template (a file, else the template itself
when it holds Jinja), plus the names of the templates bundled in engine/templates/. A pair is
rendered as the conversation [{"role": "query", ...}, {"role": "document", ...}], vLLM's score
messages; the template also sees `query` and `document` as plain variables.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ModelLoadError

TEMPLATES = Path(__file__).parent / "templates"


def bundled_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES.glob("*.jinja"))


def resolve_template(value: str) -> str:
    """The template text that `value` names."""
    if value in bundled_templates():
        return (TEMPLATES / f"{value}.jinja").read_text(encoding="utf-8")
    path = Path(value)
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:
        pass  # a template too long to be a file name
    if any(c in value for c in "{}\n"):
        return value
    raise ModelLoadError(
        f"--chat-template {value!r} is neither a file, a Jinja template, nor one of the bundled "
        f"templates ({', '.join(bundled_templates())})."
    )


def pair_messages(query: str, document: str) -> list[dict[str, str]]:
    return [{"role": "query", "content": query}, {"role": "document", "content": document}]
