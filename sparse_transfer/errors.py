"""One base class for every input mistake a user can make, so that command-line
tools can report it as one line and exit with status 2 (real bugs keep tracebacks)."""


class ConfigurationError(ValueError):
    """Bad input: the message names the problem and the fix."""
