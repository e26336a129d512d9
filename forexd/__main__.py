"""``python -m forexd``."""

import sys

from forexd.cli import main

sys.exit(main())
