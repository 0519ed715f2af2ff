"""Errors a user can act on. The CLI prints them on one line (no traceback) and exits 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class KddbenchError(Exception):
    """Something the user can fix: bad input, missing data, unknown names."""

    exit_code = 2


class UnknownNameError(KddbenchError, KeyError):
    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind, self.name = kind, name
        self.available = sorted(set(available))
        super().__init__(unknown_message(kind, name, self.available))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataMissingError(KddbenchError):
    """A data set is not on disk and may not be downloaded."""


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``name``, if any is reasonably close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_message(kind: str, name: str, available: Iterable[str]) -> str:
    available = sorted(set(available))
    hint = suggest(name, available)
    text = f"unknown {kind} {name!r}"
    if hint:
        text += f"; did you mean {hint!r}?"
    shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
    return text + f" (available: {shown})"
