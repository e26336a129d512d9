"""``python -m forexd``.

Guarded: anyio's spawned worker processes (``compute.executor = "processes"``) import the
parent's ``__main__`` under another name, and must not run the CLI again. Ctrl-C while the
CLI itself is still being imported exits quietly, like Ctrl-C anywhere else in it.

For ``forexd run`` the stop signals are caught first thing, before the heavy imports, so a
SIGTERM or Ctrl-C during start-up still ends in a clean shutdown (see
:mod:`forexd.daemon.stopsignals`).
"""

import sys

if __name__ == "__main__":
    from forexd.daemon import stopsignals

    if stopsignals.wants_daemon(sys.argv[1:]):
        stopsignals.install(sys.argv[1:])
    try:
        from forexd.cli import main
    except KeyboardInterrupt:
        sys.exit(0 if "run" in sys.argv[1:2] else 130)
    sys.exit(main())
