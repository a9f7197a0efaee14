"""What every family's ``validate_arch`` checks alike: the fields all arch dicts have, positive ints, odd kernels.

Each family (networks/resnet.py, alexnet.py, mobilenet.py) checks its own layout after
``check_common``; a ValueError names the first malformed field as ``arch['stages'][0]['mid']``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive_int(value: object, where: str) -> int:
    """``value`` if it is an int >= 1, else ValueError naming ``arch{where}``."""
    # bool is an int subclass; True as a width is always a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"arch{where} must be a positive int, got {value!r}")
    return value


def odd_kernel(value: object, where: str) -> int:
    """``value`` if it is a positive odd int, else ValueError naming ``arch{where}``."""
    k = positive_int(value, where)
    if k % 2 == 0:
        # padding = k // 2 only preserves the spatial shape for odd kernels.
        raise ValueError(f"arch{where} must be an odd kernel size, got {k}")
    return k


def check_common(arch: Any, *, fields: Iterable[str], family: str | None = None) -> tuple[int, int]:
    """Check that ``arch`` is a dict with every one of ``fields``, of ``family`` (if given), with positive
    ``in_channels`` and ``num_classes`` and an ``input_size`` [H, W] of positive ints; return (H, W)."""
    if not isinstance(arch, dict):
        raise ValueError(f"arch must be a dict, got {type(arch).__name__}")
    for key in fields:
        if key not in arch:
            raise ValueError(f"arch is missing the field {key!r}")
    if family is not None and arch["family"] != family:
        raise ValueError(f"arch['family'] must be {family!r}, got {arch['family']!r}")
    positive_int(arch["in_channels"], "['in_channels']")
    positive_int(arch["num_classes"], "['num_classes']")
    size = arch["input_size"]
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ValueError(f"arch['input_size'] must be [H, W], got {size!r}")
    return positive_int(size[0], "['input_size'][0]"), positive_int(size[1], "['input_size'][1]")
