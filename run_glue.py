#!/usr/bin/env python
"""`accelerate launch run_glue.py --task rte`: the main job from a checkout, the same as
`sparse-transfer glue` and `python -m sparse_transfer.transfer` (sparse_transfer/transfer/run.py)."""

import sys

from sparse_transfer.transfer.run import main

if __name__ == "__main__":
    sys.exit(main())
