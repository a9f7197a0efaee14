"""edgecloud: edge-cloud cooperative DNN inference (command line, build pipeline, evaluation, demo).

Supported Python: 3.11 to 3.13. Importing this package on any other version raises
`UnsupportedPythonError`, and `requires-python` in pyproject.toml and the Makefile's venv recipes refuse
the same versions, so each way in (pip, make, the `edgecloud` command) stops with the same reason.

Why not 3.14: it adds a standard-library package named ``compression`` (PEP 784: ``compression.zstd``,
plus ``compression.gzip``, ``.bz2``, ``.lzma``, ``.zlib``), and ours is a top-level package of that name.
Only one of the two can be imported, and which one depends on sys.path, so both orders break:

- installed (also editable): the standard library's directory comes before site-packages and before the
  editable finder, so ``import compression`` finds the stdlib's and ``import compression.search`` fails
  with ModuleNotFoundError, far from the cause;
- from a checkout with the repository root first on sys.path (``python -m ...``, pytest from the root):
  ours shadows the stdlib's for the whole process, so every standard-library module that imports
  ``compression.zstd`` (3.14's tarfile and zipfile do, for Zstandard) gets our package instead.

Making the collision impossible means a different import name for our package (a subpackage, or a
``package_dir`` mapping), which changes the design's top-level folders or every import of them; a checkout
would still shadow the stdlib. So the affected versions are refused instead, at every door: pip
(requires-python), make (the venv recipes), deploy/pi/install.sh, and this import.
"""

from __future__ import annotations

import sys

__version__ = "0.1.0"

MIN_PYTHON: tuple[int, int] = (3, 11)
"""The oldest supported Python (the code uses tomllib and typing features from 3.11)."""

FIRST_UNSUPPORTED_PYTHON: tuple[int, int] = (3, 14)
"""The first refused Python: its standard library has a top-level ``compression`` package (PEP 784)."""


class UnsupportedPythonError(RuntimeError):
    """Raised at import on a Python outside [MIN_PYTHON, FIRST_UNSUPPORTED_PYTHON)."""


def supported_range() -> str:
    """The supported versions as a requirement specifier, the form pyproject.toml's requires-python uses."""
    low, high = MIN_PYTHON, FIRST_UNSUPPORTED_PYTHON
    return f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def check_python(version: tuple[int, ...]) -> None:
    """Raise UnsupportedPythonError naming `version` and the supported range unless it lies in that range."""
    major_minor = tuple(version[:2])
    if MIN_PYTHON <= major_minor < FIRST_UNSUPPORTED_PYTHON:
        return
    found = ".".join(str(part) for part in version[:3])
    why = (f" Python {FIRST_UNSUPPORTED_PYTHON[0]}.{FIRST_UNSUPPORTED_PYTHON[1]} and later have a "
           "standard-library package named 'compression' (PEP 784) that collides with edgecloud's "
           "own 'compression' package.") if major_minor >= FIRST_UNSUPPORTED_PYTHON else ""
    raise UnsupportedPythonError(
        f"edgecloud does not run on Python {found}: it supports Python {supported_range()}.{why} "
        f"Create the environment with Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} to "
        f"{FIRST_UNSUPPORTED_PYTHON[0]}.{FIRST_UNSUPPORTED_PYTHON[1] - 1}, "
        "for example `make PYTHON=python3.11 demo`."
    )


# At import, so `edgecloud ...` (every command, the servers included) stops here with the reason
# instead of failing later inside `import compression.search`.
check_python(tuple(sys.version_info))
