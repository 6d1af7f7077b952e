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


class DataError(FacebenchError):
    """Input data exists but cannot be used as it is (e.g. unreadable image files): exit 2."""


class BadImageError(DataError):
    """One image file cannot be decoded (missing, empty, truncated, not an image)."""


class MetricInputError(FacebenchError, ValueError):
    """A metric was called with arrays of the wrong shape, dtype or values (or a bad metric parameter).

    Also a ``ValueError``, as NumPy and scikit-learn callers of a metric function expect."""


class ModelError(FacebenchError):
    """A model cannot be loaded or its outputs disagree with its declared heads."""


class RegistryError(FacebenchError):
    """An unknown dataset, model or protocol name."""


class CompareError(FacebenchError):
    """``compare`` or ``baseline`` cannot judge its inputs (unreadable, malformed, incomparable): exit 2."""


class OutputError(ConfigError):
    """An output folder or file cannot be written without touching what facebench did not write."""


class YamlError(ConfigError):
    """Invalid or oversized YAML; ``line`` is 1-based (None when unknown), ``problem`` the bare message."""

    def __init__(self, source: str, line: int | None, problem: str):
        self.source, self.line, self.problem = source, line, problem
        super().__init__(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")


class SuiteError(FacebenchError):
    """Every problem of a suite file at once; ``problems`` have ``format(file)`` (``suite.Problem``)."""

    def __init__(self, file: str, problems: list):
        self.file, self.problems = file, problems
        super().__init__("\n".join(p.format(file) for p in problems))


class ReportError(FacebenchError, ValueError):
    """Run folders cannot be read or merged (missing results.json, fingerprints differ under strict=True), or a
    table or figure cannot be drawn from what it was given (mismatched lengths, a non-square confusion matrix)."""


class PluginWarning(UserWarning):
    """A plug-in entry point that is left out (it does not load, or its name is taken)."""


class CacheWarning(UserWarning):
    """The cache folder (prediction store, decoded images) is corrupt or unusable; the run goes on."""


# Exit codes: the one table (README "Exit codes" lists the same; tests/test_integrity.py checks it).
EXIT_OK = 0  # every command: done; run/rescore: every task ran
EXIT_TASK_FAILED = 1  # run/rescore: a task failed (the others' results are kept)
EXIT_BAD_INPUT = 2  # every command: bad configuration, arguments or data (a FacebenchError); nothing was judged
EXIT_NOTHING_EVALUATED = 3  # run/rescore: every task was skipped (the run folder records why)
EXIT_COMPARE_OK = 0  # compare: every compared metric judged, no regression
EXIT_REGRESSION = 1  # compare: a metric regressed
EXIT_CANNOT_JUDGE = 2  # compare: cannot judge (unreadable, malformed, NaN, missing, mismatched)
EXIT_INTERNAL_ERROR = 4  # every command: a bug in facebench (never read as "regression" or "task failed")
EXIT_INTERRUPTED = 130  # every command: Ctrl-C (128 + SIGINT)


#: The exit code of each error class: the one table (``exit_code_for`` reads it; tests check that every
#: FacebenchError class of this module is listed and that the CLI agrees).
ERROR_EXIT_CODES: dict[type, int] = {
    FacebenchError: EXIT_BAD_INPUT,
    ConfigError: EXIT_BAD_INPUT,
    OutputError: EXIT_BAD_INPUT,
    YamlError: EXIT_BAD_INPUT,
    SuiteError: EXIT_BAD_INPUT,
    RegistryError: EXIT_BAD_INPUT,
    DatasetNotFoundError: EXIT_BAD_INPUT,
    DataError: EXIT_BAD_INPUT,
    BadImageError: EXIT_BAD_INPUT,
    MetricInputError: EXIT_BAD_INPUT,
    ModelError: EXIT_BAD_INPUT,
    ReportError: EXIT_BAD_INPUT,
    CompareError: EXIT_CANNOT_JUDGE,
}


def exit_code_for(err: BaseException) -> int:
    """The exit code of ``err``: its nearest class in ``ERROR_EXIT_CODES``; Ctrl-C is ``EXIT_INTERRUPTED``,
    any other exception a bug (``EXIT_INTERNAL_ERROR``)."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for cls in type(err).__mro__:
        if cls in ERROR_EXIT_CODES:
            return ERROR_EXIT_CODES[cls]
    return EXIT_INTERNAL_ERROR


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' Did you mean "{matches[0]}"?' if matches else ""
