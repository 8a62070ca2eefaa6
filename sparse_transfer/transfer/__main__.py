"""`python -m sparse_transfer.transfer` / `accelerate launch -m sparse_transfer.transfer`: the main job."""

import sys

from sparse_transfer.transfer.run import main

sys.exit(main(prog="python -m sparse_transfer.transfer"))
