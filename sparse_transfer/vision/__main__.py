"""`python -m sparse_transfer.vision --recipe NAME [k=v ...]` (`accelerate launch -m
sparse_transfer.vision ...` on several devices): train a vision model with a recipe."""

import sys

from sparse_transfer.vision.train import main

sys.exit(main())
