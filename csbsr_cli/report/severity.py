"""Crack severity classes by width in millimetres.

Defaults follow the AASHTO Manual for Bridge Element Inspection (2019), defect 1130 "Cracking (RC and
other)": insignificant below 0.012 in (0.3 mm), moderate 0.3-1.25 mm (0.012-0.05 in), wide above 1.25 mm.
Inspection regimes differ (owners, materials, exposure): the thresholds are a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

DEFAULT_THRESHOLDS_MM: tuple[float, ...] = (0.3, 1.25)
DEFAULT_NAMES: tuple[str, ...] = ("insignificant", "moderate", "wide")
UNKNOWN = "unknown (no GSD)"


def severity(
    width_mm: float | None,
    thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    names: Sequence[str] = DEFAULT_NAMES,
) -> str:
    """The class of a crack of maximum width `width_mm` (classes are [t_i, t_i+1), the last open)."""
    if len(names) != len(thresholds_mm) + 1 or list(thresholds_mm) != sorted(thresholds_mm):
        raise ValueError("severity needs increasing thresholds and one more name than thresholds")
    if width_mm is None:
        return UNKNOWN
    return names[sum(width_mm >= t for t in thresholds_mm)]


def parse_thresholds(text: str, option: str = "--severity-mm") -> tuple[float, ...]:
    """`"0.3,1.25"` -> (0.3, 1.25): increasing positive widths in mm, one fewer than the classes."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option}: expected increasing numbers like 0.3,1.25, got {text!r}") from None
    if len(values) != len(DEFAULT_NAMES) - 1 or list(values) != sorted(values) or values[0] <= 0:
        raise InputError(f"{option}: expected {len(DEFAULT_NAMES) - 1} increasing widths in mm, got {text!r}")
    return values
