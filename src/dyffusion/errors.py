"""The errors a user can cause and fix: the CLI prints them as one line; anything else is a bug of ours.

Every class is a ``ValueError``, so code that catches ``ValueError`` around the API keeps working; the CLI
tells them apart from our own ``ValueError`` by the base class :class:`UserError`.
"""


class UserError(ValueError):
    """An option, file or setting the user gave that cannot work; the message says what and how to fix it."""


class ConfigError(UserError):
    """A config file or override that does not fit the schema."""


class DataError(UserError):
    """Data that does not meet the contract; the message names what and where."""


class RunError(UserError):
    """A run directory that is missing, incomplete, or does not fit the data it is used with."""
