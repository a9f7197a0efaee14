"""File checks shared by the readers: presence, and the optional MD5SUMS manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from shared.data.base import DatasetError

MD5SUMS = "MD5SUMS"
_CHUNK = 1 << 20


def require_file(path: Path, *, expected: str) -> Path:
    """Return `path` if it is a regular file, else raise naming it and the format it should hold."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected {expected}")
    return path


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks so a large archive never sits in memory twice."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_md5sums(path: Path) -> dict[str, str]:
    """Parse an `md5sum`-style file ("<32 hex>  <name>", or "*<name>" for binary mode)."""
    sums: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable; expected md5sum output ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
            raise DatasetError(f"{path}:{lineno}: expected '<32 hex digits>  <file name>', got {line!r}")
        sums[parts[1].strip().lstrip("*")] = digest
    return sums


def verify_md5sums(data_dir: Path, names: Iterable[str]) -> None:
    """If `data_dir` holds an MD5SUMS file, check every one of `names` that it lists.

    Names it does not list are not checked: the manifest is optional and may cover other files.
    """
    manifest = data_dir / MD5SUMS
    if not manifest.is_file():
        return
    sums = read_md5sums(manifest)
    for name in names:
        expected = sums.get(name)
        if expected is None:
            continue
        actual = md5_of(data_dir / name)
        if actual != expected:
            raise DatasetError(
                f"{data_dir / name}: MD5 {actual} does not match {expected} listed in {manifest}; "
                "the file is corrupt or not the original"
            )
