"""``python -m forexd``.

Guarded: anyio's spawned worker processes (``compute.executor = "processes"``) import the
parent's ``__main__`` under another name, and must not run the CLI again.
"""

import sys

from forexd.cli import main

if __name__ == "__main__":
    sys.exit(main())
