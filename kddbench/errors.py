"""Errors a user can act on, and the exit codes of the ``kddbench`` command.

The CLI prints a :class:`KddbenchError` on one line (no traceback) and exits with its
``exit_code`` (:attr:`ExitCode.INVALID_INPUT` unless the error says otherwise).
"""
from __future__ import annotations

import difflib
import enum
from typing import Iterable


class ExitCode(enum.IntEnum):
    """What the exit status of every ``kddbench`` command means (also in ``kddbench --help``)."""

    OK = 0
    REGRESSION = 1
    INVALID_INPUT = 2
    FAILED_CELLS = 3
    NOTHING_COMPARED = 4
    NOT_COMPARABLE = 5
    INTERRUPTED = 130

    @classmethod
    def describe(cls) -> str:
        """One line per code, for help texts: ``0 OK: ...``."""
        return "\n".join(f"{int(code):>3}  {code.name}: {_MEANING[code]}" for code in cls)


_MEANING = {
    ExitCode.OK: "done (and the gate passed)",
    ExitCode.REGRESSION: "compare found a regression",
    ExitCode.INVALID_INPUT: "bad input: suite, CSV, name, option, missing data",
    ExitCode.FAILED_CELLS: "the run finished but some cells failed",
    ExitCode.NOTHING_COMPARED: ("compare found nothing to compare, or a baseline row is missing; "
                                "release found nothing to release"),
    ExitCode.NOT_COMPARABLE: "plugin or protocol versions differ",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM; SIGUSR1 lets the running cells "
                          "finish first); finished cells are kept",
}


class KddbenchError(Exception):
    """Something the user can fix: bad input, missing data, unknown names."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT


class UnknownNameError(KddbenchError, KeyError):
    """A name that is not registered; the message suggests the closest one (see
    :func:`unknown_message`) or says which plugin failed to load it."""

    def __init__(self, kind: str, name: str, available: Iterable[str], because: str | None = None,
                 note: str | None = None):
        self.kind, self.name = kind, name
        self.available = sorted(set(available))
        super().__init__(unknown_message(kind, name, self.available, because=because, note=note))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataMissingError(KddbenchError):
    """A data set is not on disk and may not be downloaded."""


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``name``, if any is reasonably close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, else ``""`` (the hint every message
    here uses; :func:`unknown_message` is the whole sentence)."""
    hint = suggest(str(name), [str(c) for c in choices])
    return f"; did you mean {hint!r}?" if hint else ""


def unknown_message(kind: str, name: str, available: Iterable[str], because: str | None = None,
                    note: str | None = None, listing: str = "available",
                    say_name: bool = True) -> str:
    """The one "did you mean" text of kddbench; every unknown name, key or choice uses it:
    ``unknown task 'condnse'; did you mean 'condense'? (available: condense, kd)``.

    because:  why the name is missing when that is known (a plugin that failed to load):
              ``condensation method 'x' is missing: plugin 'p' failed to load: ...``.
    note:     appended after the list of available names.
    listing:  what the list is called (``allowed``, ``options``, ``stages``...).
    say_name: false where the caller's path already names it (``a.b.epocs: unknown key; did
              you mean 'epochs'? (allowed: ...)``).
    """
    if because:
        return f"{kind} {name!r} is missing: {because}"
    available = list(dict.fromkeys(map(str, available)))  # keep the caller's order, no repeats
    text = (f"unknown {kind} {name!r}" if say_name else f"unknown {kind}")
    text += did_you_mean(name, available)
    shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
    text += f" ({listing}: {shown or 'none'})"
    return text + (f"; {note}" if note else "")
