"""Errors a user can act on.

Every failure the library expects (bad spec, unreadable model, missing data) is one of these,
so that the CLI prints one line and the service maps it to a 4xx or a failed job with the same
message. Anything else is a bug.
"""


class RobustnessError(ValueError):
    """Base class: the message is written for the user and names what to fix."""


class SpecError(RobustnessError):
    """The audit or training spec is invalid; the message names the field."""


class ModelLoadError(RobustnessError):
    """The checkpoint could not be loaded safely or does not match its metadata."""


class DataError(RobustnessError):
    """The data set is missing, malformed or smaller than requested."""
