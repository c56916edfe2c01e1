"""``Meta``: what every translator is given rather than inventing (no clock or random ids inside them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Meta:
    """What a translator may not invent itself: the response id, creation time and model name."""

    id: str
    created: int
    model: str
