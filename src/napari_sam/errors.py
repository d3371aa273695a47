"""Exceptions that the command line maps to exit statuses.

``InputError`` means bad usage or bad input: the CLI prints its message as one
line on stderr and exits with status 2. Anything else exits with status 1.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input or usage; the message names the file and the problem."""


class OutputExistsError(InputError):
    """An output already exists and ``overwrite`` was not given."""


class StaleCacheError(InputError):
    """An embedding store was made with other settings or from another source."""
