"""Did-you-mean suggestions for a misspelt name, used by every config check."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for ``word``, case-insensitive, best first."""
    by_lower: dict[str, str] = {}
    for cand in candidates:
        by_lower.setdefault(cand.lower(), cand)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    # A prefix/substring match catches 'adam8' -> 'Adam8bit' that ratio misses.
    lowered = word.lower()
    for low in by_lower:
        if len(matches) >= n:
            break
        if low not in matches and len(lowered) >= 3 and (low.startswith(lowered) or lowered in low):
            matches.append(low)
    return [by_lower[m] for m in matches[:n]]


def suggestion_text(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'X' or 'Y'?"`` or an empty string."""
    close = did_you_mean(word, candidates)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    if len(quoted) == 1:
        return f"; did you mean {quoted[0]}?"
    return f"; did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"
