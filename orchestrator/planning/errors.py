"""Errors for bad input. Each names the offender and the fix; the CLI prints them
without a traceback and exits with status 2."""
from __future__ import annotations

import difflib
import reprlib
from typing import Iterable


class CritpathError(Exception):
    """Bad input the user can fix. ``str()`` is the message the CLI prints."""


class GraphError(CritpathError):
    """Every problem found in a graph, reported at once (sorted, counted)."""

    def __init__(self, problems: Iterable[str], source: str | None = None):
        self.problems = sorted(set(problems))
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"graph{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"{len(self.problems)} problems in graph{where}:\n{lines}"
        super().__init__(text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest names, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlevel, _repr.maxlist, _repr.maxdict = 40, 40, 2, 4, 4


def show(value) -> str:
    """A short repr for messages; never raises, whatever the value (deep junk, huge ints)."""
    try:
        return _repr.repr(value)
    except Exception:  # e.g. an int too long to print
        return f"<{type(value).__name__}>"
