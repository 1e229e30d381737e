"""Keyset cursors for lists ordered by (updated_at DESC, id DESC): the id breaks ties, so rows that
share an updated_at (one group commit touches many conversations at one `now()`) are neither
skipped nor repeated at a page boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """Keyset position: (updated_at, id) of the last row of the previous page."""

    updated_at: datetime
    id: UUID

    def encode(self) -> str:
        """URL-safe as is: microseconds since the epoch and the id's hex."""
        micros = (self.updated_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}-{self.id.hex}"

    @staticmethod
    def decode(raw: str) -> Cursor:
        """ValueError on anything encode() did not make (the routes answer 422)."""
        micros, _, cid = raw.partition("-")
        try:
            return Cursor(_EPOCH + timedelta(microseconds=int(micros)), UUID(hex=cid))
        except OverflowError:  # a number of microseconds no date has
            raise ValueError(f"cursor out of range: {raw[:50]!r}") from None
