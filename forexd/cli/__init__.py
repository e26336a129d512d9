# PYTHON_ARGCOMPLETE_OK  (lets argcomplete's global completion find forexd)
"""The ``forexd`` command line (see :mod:`forexd.cli.app` for how it is put together).

Layout: ``app`` (parser, ``main``, exit codes), ``parser`` (typo suggestions, handler
binding), ``options`` (shared flags), ``output`` (human vs ``--json``, errors), ``tables``
(tables that fit the terminal), and one module per command family: ``run``, ``ctl`` (+
``ctl_render``), ``backtest``, ``ml`` (+ ``ml_render``), ``data``, ``risk``, ``system``
(config, hw, completion), ``service``.
"""

from forexd.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
