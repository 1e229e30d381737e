"""Fill a broadcast's `{{user.…}}` placeholders for one recipient.

`compile_template(text)` parses once per run into literal parts and fields; `render(user)` is then
a join, cheap enough for every recipient of a batch. Placeholders: `{{user.name}}`, `{{user.email}}`,
`{{user.external_id}}`, `{{user.custom.<attribute>}}`, each with an optional fallback after `|`
used when the value is missing or empty. Anything else between braces is left as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(
    r"\{\{\s*user\.(name|email|external_id|custom\.([A-Za-z0-9_.\-]{1,100}))\s*(?:\|([^{}]*?))?\s*\}\}")


@dataclass(frozen=True, slots=True)
class _Field:
    column: str  # name, email, external_id, or "custom"
    attribute: str | None
    fallback: str


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | _Field, ...]

    def render(self, user: Mapping[str, Any]) -> str:
        """`user`: a row or mapping with name, email, external_id and attributes (a dict, or None)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.attribute is not None:
                attributes = user.get("attributes") or {}
                value = attributes.get(part.attribute) if isinstance(attributes, Mapping) else None
            else:
                value = user.get(part.column)
            out.append(_text(value) or part.fallback)
        return "".join(out)

    @property
    def personalised(self) -> bool:
        return any(not isinstance(p, str) for p in self.parts)


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_template(text: str) -> Template:
    parts: list[str | _Field] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(text[pos:match.start()])
        field, attribute, fallback = match.group(1), match.group(2), match.group(3)
        parts.append(_Field("custom" if attribute else field, attribute, (fallback or "").strip()))
        pos = match.end()
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts))


@functools.lru_cache(maxsize=256)
def compiled(text: str) -> Template:
    """The template of a message text, parsed once per text while it is in use."""
    return compile_template(text)


def personalise(text: str, user: Mapping[str, Any]) -> str:
    """`text` filled for one recipient (the template is parsed once per text, then cached)."""
    return compiled(text).render(user) if "{{" in text else text


render = personalise
