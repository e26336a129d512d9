"""Print a pip constraints file that pins every dependency of forexd to its floor.

``make test-floors`` installs forexd with it, so the lowest versions ``pyproject.toml``
allows are the ones tested (pip has no "lowest" resolution of its own). Only ``>=``
floors are pinned; markers are kept, so ``tomli==2.0; python_version < '3.11'`` applies
only where it is installed at all.

Usage: python .ci/floors.py [EXTRA ...]   (the runtime dependencies plus those extras)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(;.*)?$")


def floors(pyproject: Path, extras: list[str]) -> list[str]:
    """``name==floor[; marker]`` for each ``>=`` requirement of the runtime and ``extras``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    out: dict[str, str] = {}
    for req in reqs:
        m = SPEC.match(req.split("#")[0])
        if m is None or m.group(1) == project["name"]:
            continue  # no floor (e.g. "types-psutil") or a self-reference to extras
        name, version, marker = m.group(1), m.group(2), m.group(3) or ""
        out[name.lower()] = f"{name}=={version}{marker}"
    return sorted(out.values())


if __name__ == "__main__":
    print("\n".join(floors(Path(__file__).resolve().parents[1] / "pyproject.toml", sys.argv[1:])))
