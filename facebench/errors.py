"""Errors a person can act on: each message says what went wrong and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


class FacebenchError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(FacebenchError):
    """A suite, argument or parameter is invalid."""


class DatasetNotFoundError(FacebenchError):
    """A dataset folder or file is missing or does not have the expected layout."""


class ModelError(FacebenchError):
    """A model cannot be loaded or its outputs disagree with its declared heads."""


class RegistryError(FacebenchError):
    """An unknown dataset, model or protocol name."""


class CompareError(FacebenchError):
    """``compare`` or ``baseline`` cannot judge its inputs (unreadable, malformed, incomparable): exit 2."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' Did you mean "{matches[0]}"?' if matches else ""
