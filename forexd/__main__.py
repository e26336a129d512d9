"""``python -m forexd``.

Guarded: anyio's spawned worker processes (``compute.executor = "processes"``) import the
parent's ``__main__`` under another name, and must not run the CLI again.

For ``forexd run`` the stop signals are caught first thing, before the heavy imports, so a
SIGTERM or Ctrl-C during start-up still ends in a clean shutdown (see
:mod:`forexd.daemon.stopsignals`).
"""

import sys

if __name__ == "__main__":
    from forexd.daemon import stopsignals

    if stopsignals.wants_daemon(sys.argv[1:]):
        stopsignals.install(sys.argv[1:])

    from forexd.cli import main

    sys.exit(main())
