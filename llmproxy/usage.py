"""Token usage in one shape across formats, and its cost from a model's price table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


def hub_usage(prompt: int, completion: int, *, cached: int = 0, cache_write: int = 0, reasoning: int = 0) -> dict:
    """The hub (OpenAI-shaped) usage object; ``prompt`` counts every input token, cached ones included.

    ``prompt_tokens_details.cache_write_tokens`` is our extension (OpenAI has no such count);
    OpenAI clients ignore it.
    """
    details: dict[str, int] = {"cached_tokens": cached}
    if cache_write:
        details["cache_write_tokens"] = cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


@dataclass(slots=True)
class Usage:
    """Normalised counts for the log row."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @classmethod
    def of_answer(cls, body: Any) -> "Usage | None":
        """The usage of a hub (OpenAI-shaped) answer body, None when it has none."""
        usage = body.get("usage") if isinstance(body, dict) else None
        return cls.from_hub(usage) if isinstance(usage, dict) else None

    @classmethod
    def from_hub(cls, u: Mapping[str, Any] | None) -> "Usage | None":
        if not u:
            return None
        pd = u.get("prompt_tokens_details") or {}
        cd = u.get("completion_tokens_details") or {}
        return cls(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0),  # (prompt, completion,
                   int(pd.get("cached_tokens") or 0), int(pd.get("cache_write_tokens") or 0),  # cached, cache_write,
                   int(cd.get("reasoning_tokens") or 0))  # reasoning: positional, a third cheaper than by keyword)

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def cost(self, price: Mapping[str, float] | None) -> float | None:
        """USD for these tokens, prices per 1M tokens; cached and cache-write tokens at their own price."""
        if not price:
            return None
        fresh = max(self.prompt - self.cached - self.cache_write, 0)
        inp = price.get("input", 0.0)
        return (
            fresh * inp
            + self.cached * price.get("cache_read", inp)
            + self.cache_write * price.get("cache_write", inp)
            + self.completion * price.get("output", 0.0)
        ) / 1_000_000
