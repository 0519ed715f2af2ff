"""``none``: no augmentation (the factory returns None, which the protocol skips)."""
from __future__ import annotations

from typing import Any


def none(data: Any = None) -> None:
    return None
