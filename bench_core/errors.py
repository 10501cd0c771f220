"""User-facing errors: one line naming the bad value and what is allowed. The CLI maps them to exit 2."""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    """A mistake in user input (unknown name, malformed suite, invalid config). Printed as one line."""


def unknown_name_error(what: str, name: str, allowed: Iterable[str]) -> BenchError:
    """``unknown attack 'badnett'; did you mean 'badnet'? allowed: badnet, blended``."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return BenchError(f"unknown {what} {name!r}{hint} allowed: {', '.join(allowed) or '(none registered)'}")


def config_error(what: str, exc: Exception) -> BenchError:
    """Condense a pydantic ValidationError into one line naming field, value and constraint."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            parts.append(f"{loc}{shown}: {err['msg']}")
        return BenchError(f"invalid {what}: " + "; ".join(parts))
    return BenchError(f"invalid {what}: {exc}")
