"""Exceptions raised for user mistakes.

Values that break a rule raise :class:`ValueError`, wrong types :class:`TypeError`;
files that do not have the expected layout raise :class:`DataFormatError`, and
malformed sweep specs :class:`SpecError`; remote tasks that failed (the Ray executor)
:class:`ExecutorError`. The CLI prints any of them as one line.
"""

from __future__ import annotations

__all__ = ["DataFormatError", "ExecutorError", "SpecError"]


class DataFormatError(ValueError):
    """A data file does not have the layout its loader expects.

    The message names the file, the key and what was expected.
    """


class SpecError(ValueError):
    """A sweep specification (TOML or keywords) is malformed.

    The message names the field, the rule and the value given.
    """


class ExecutorError(RuntimeError):
    """Some tasks of a distributed sweep failed; the finished runs are saved.

    The message names each failed shard and its error, and how to resume.
    """
