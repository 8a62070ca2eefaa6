"""`python -m sparse_transfer COMMAND ...`: the `sparse-transfer` command."""

import sys

from sparse_transfer.cli import main

sys.exit(main())
