"""Fills a broadcast's `{{user.…}}` placeholders for one recipient at send time.

`{{user.name}}`, `{{user.email}}`, `{{user.external_id}}`, `{{user.custom.<name>}}`, each with an
optional fallback after `|` (`{{user.name|there}}`); an unknown or empty value gives the fallback
(or nothing). Values are inserted as text: the SDK renders the message as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*user\.(name|email|external_id|custom\.[^|}\s]+)\s*(?:\|([^}]*))?\}\}")


def _value(user: Mapping[str, Any], field: str) -> str:
    if field.startswith("custom."):
        attrs = user.get("attributes") or {}
        value = attrs.get(field[7:]) if isinstance(attrs, Mapping) else None
    else:
        value = user.get(field)
    if value is None or value == "" or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def personalise(text: str, user: Mapping[str, Any]) -> str:
    """`text` with each placeholder replaced by the user's value, or its fallback."""
    if "{{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: _value(user, m.group(1)) or (m.group(2) or "").strip(), text)
