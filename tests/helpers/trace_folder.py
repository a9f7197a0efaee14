"""A folder of small bandwidth traces for the tests that train planners."""

from __future__ import annotations

from pathlib import Path


def trace_folder(folder: Path) -> Path:
    """Two small bandwidth traces (0.5 and 1.5 Mbit/s, 20 s each) in `folder`, as `split train` reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        (folder / f"t{i}").write_text("".join(f"{t / 10}\t{0.5 + i}\n" for t in range(200)))
    return folder
