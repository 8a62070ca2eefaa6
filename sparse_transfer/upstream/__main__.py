"""`python -m sparse_transfer.upstream` / `accelerate launch -m sparse_transfer.upstream`:
prune a dense pretrained encoder upstream, gradually, with distillation from itself."""

import sys

from sparse_transfer.upstream.run import main

sys.exit(main())
