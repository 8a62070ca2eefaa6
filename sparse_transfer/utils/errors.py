"""One base class for every input mistake a user can make, so that command-line
tools can report it as one line and exit with status 2 (real bugs keep tracebacks)."""

import sys
from collections.abc import Callable

from sparse_transfer.utils.distributed import process_group_released


class ConfigurationError(ValueError):
    """Bad input: the message names the problem and the fix."""


def exit_status(prog: str, command: Callable[[], object]) -> int:
    """Run `command`: 0 when it finishes, 2 with one line on stderr for bad input.
    Either way a distributed run's process group is released before the process exits."""
    try:
        with process_group_released():
            command()
    except ConfigurationError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
