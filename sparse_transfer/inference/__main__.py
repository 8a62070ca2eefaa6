"""`python -m sparse_transfer.inference`: export a sparse checkpoint for fast CPU inference."""

import sys

from sparse_transfer.inference.export import main

sys.exit(main())
