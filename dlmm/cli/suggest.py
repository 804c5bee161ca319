"""Mistyped options and commands: find the one meant, and say it in the error.

``dlmm fit --formla ...`` stops with ``unrecognized option --formla; did you mean
--formula?``. Abbreviations are not accepted (every parser has
``allow_abbrev=False``): ``--form`` is unrecognized too, and the suggestion names
the option it starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely meant: the only one it is a prefix of, else
    the closest by :func:`difflib.get_close_matches` (similarity at least 0.6), else
    None."""
    names = sorted(set(candidates))
    starting = [n for n in names if n.startswith(word) and n != word]
    if len(starting) == 1:
        return starting[0]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest candidate, or ``""``."""
    near = closest(word, candidates)
    return f"; did you mean {near}?" if near else ""


def _looks_like_option(arg: str) -> bool:
    """An argument argparse would take for an option: ``--name``, ``--name=value`` or
    ``-x...``; not ``-``, a negative number, or text with blanks."""
    return (len(arg) > 1 and arg[0] == "-" and " " not in arg
            and (arg[1].isalpha() or (arg[1] == "-" and len(arg) > 2)))


def unknown_option(args: Sequence[str], known: Iterable[str],
                   stop_at_positional: bool = False) -> str | None:
    """The error message for the first argument of ``args`` that is an option but not
    one of ``known`` (option strings, e.g. ``--formula``, ``-f``), or None.

    Arguments after ``--`` are values. With ``stop_at_positional`` (a parser of
    subcommands) the scan ends at the first argument that is not an option: the
    command, whose own parser checks the rest. A short option followed by its
    value or by other short switches (``-fy~x``, ``-qv``) is known by its first two
    characters.
    """
    known = set(known)
    for arg in args:
        if arg == "--":
            return None
        if not _looks_like_option(arg):
            if stop_at_positional:
                return None
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
        if name in known:
            continue
        longs = [k for k in known if k.startswith("--")]
        shown = arg.split("=", 1)[0] if arg.startswith("--") else arg
        return f"unrecognized option {shown}{did_you_mean(shown, longs)}"
    return None
