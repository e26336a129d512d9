"""Optional dependencies (pip extras): import one, or say which extra to install.

The daemon itself needs none of them. Reports need matplotlib (``forexd[report]``),
hyper-parameter search needs optuna and cmaes (``forexd[search]``), the Prometheus
endpoint prometheus-client (``forexd[metrics]``), the mlp/gru models torch
(``forexd[torch]``). Each is imported where it is used, through :func:`require_extra`,
so a missing one ends the command with one line naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from forexd.errors import ForexdError

EXTRA_OF = {"matplotlib": "report", "optuna": "search", "cmaes": "search"}


class MissingExtraError(ForexdError):
    """A command needs an optional dependency that is not installed."""


def install_hint(extra: str) -> str:
    """The command that installs an extra into the running installation."""
    return f"pip install 'forexd[{extra}]'"


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (an optional dependency) or explain how to install it.

    Args:
        module: the top-level module name, e.g. ``"matplotlib"``.
        purpose: what needs it, for the message (``"an HTML report (--report)"``).

    Raises:
        MissingExtraError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRA_OF[module.partition(".")[0]]
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed ({exc}); "
            f"install the '{extra}' extra: {install_hint(extra)}"
        ) from None
