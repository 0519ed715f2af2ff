"""Plugin names with inline options: ``convnet[depth=2,width=64]``.

A suite may name a plugin with some of its options fixed inline, so one axis can hold several
variants of one plugin (cross-architecture pools, NAS search spaces).  Alternatives separated by
``|`` expand into every combination::

    expand("convnet[depth=1|2,act=relu|sigmoid]")
    -> ["convnet[act=relu,depth=1]", "convnet[act=relu,depth=2]",
        "convnet[act=sigmoid,depth=1]", "convnet[act=sigmoid,depth=2]"]

Canonical form: keys sorted, values written as TOML would (strings unquoted when plain).
"""
from __future__ import annotations

import itertools
import re
from typing import Any

from .errors import KddbenchError

_PATTERN = re.compile(r"^(?P<base>[^\[\]]+)(\[(?P<opts>[^\[\]]*)\])?$")


def _parse_scalar(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip("\"'")


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split(name: str) -> tuple[str, dict[str, list[Any]]]:
    """``"convnet[depth=1|2]"`` -> ``("convnet", {"depth": [1, 2]})``."""
    match = _PATTERN.match(str(name).strip())
    if not match:
        raise KddbenchError(f"cannot read plugin name {name!r}: expected name or "
                            "name[key=value,...]")
    options: dict[str, list[Any]] = {}
    body = match.group("opts")
    if body:
        for part in body.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise KddbenchError(f"in {name!r}: {part.strip()!r} is not key=value")
            key, _, value = part.partition("=")
            options[key.strip()] = [_parse_scalar(v) for v in value.split("|")]
    return match.group("base").strip(), options


def parse(name: str) -> tuple[str, dict[str, Any]]:
    """``"convnet[depth=2]"`` -> ``("convnet", {"depth": 2})`` (no alternatives allowed)."""
    base, options = split(name)
    multi = [k for k, v in options.items() if len(v) != 1]
    if multi:
        raise KddbenchError(f"{name!r} still has alternatives for {multi}; expand it first")
    return base, {k: v[0] for k, v in options.items()}


def join(base: str, options: dict[str, Any]) -> str:
    if not options:
        return base
    body = ",".join(f"{k}={_format_scalar(options[k])}" for k in sorted(options))
    return f"{base}[{body}]"


def expand(name: str) -> list[str]:
    """Every combination of the ``|`` alternatives, in canonical form."""
    base, options = split(name)
    keys = sorted(options)
    return [join(base, dict(zip(keys, combo)))
            for combo in itertools.product(*(options[k] for k in keys))]


def space(names_: "list[str] | tuple[str, ...] | str") -> list[str]:
    """Every name a search space holds: each entry expanded (:func:`expand`), in order, each
    name once."""
    out: dict[str, None] = {}
    for entry in ([names_] if isinstance(names_, str) else names_):
        for name in expand(entry):
            out.setdefault(name, None)
    return list(out)


def sample(names_: "list[str] | tuple[str, ...] | str", k: int | None = None,
           seed: int = 0) -> list[str]:
    """A seeded sample of ``k`` names from a search space (all of them when ``k`` is None or
    not smaller than the space), in the space's order.  The same space, ``k`` and ``seed``
    always give the same names, so experiments that sample alike train the same candidates::

        sample("convnet[depth=1|2|3,width=32|64]", 2, seed=0)
        -> two of the six names, the same two on every call
    """
    import random

    every = space(names_)
    if k is None or k >= len(every):
        return every
    if k < 1:
        raise KddbenchError(f"a sample takes at least one name, not {k}")
    keep = set(random.Random(int(seed)).sample(range(len(every)), int(k)))
    return [name for i, name in enumerate(every) if i in keep]
