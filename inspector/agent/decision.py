"""The pass/fail decision: fail when score >= threshold; a frame that could not be scored is an error."""

from __future__ import annotations

import math


def decide(score: float | None, threshold: float, error: str | None = None) -> tuple[str, str | None]:
    """-> (verdict, error text). verdict is pass | fail | error."""
    if error is not None:
        return "error", error
    if score is None or not math.isfinite(score):
        return "error", f"the model returned a non-finite score ({score})"
    return ("fail" if score >= threshold else "pass"), None
