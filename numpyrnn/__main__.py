"""``python -m numpyrnn``: the same as the ``numpyrnn`` command."""

import sys

from .cli import main

sys.exit(main())
