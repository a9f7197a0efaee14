"""Image folders as users keep them: ``train/<class>/*`` and ``test/<class>/*``, unpacked or in a tar.

    train, test, classes = load_image_folder(Path("../shared/data/cifar10"))            # the archive inside
    train, test, classes = load_image_folder(Path("photos/"), size=(32, 32))           # any sizes, resized

The source is a directory holding ``train/`` and ``test/``, a ``.tar``/``.tar.gz``/``.tgz`` archive
holding them (at its top or under one folder), or a directory holding exactly one such archive. Class
names are the folder names under ``train/``, sorted, so labels are the same on every machine; ``test/``
may lack a class but must not add one. Every file except hidden ones (``.DS_Store``, ``._x.jpg``) is
decoded by Pillow; one that does not decode is a ``DatasetError`` naming it, never a skipped sample.
Images are converted to RGB, or kept single-channel when every image of the dataset is greyscale,
and resized (Pillow's antialiased bilinear) to ``size`` when given; without ``size`` every image must
already share one size. Samples are ordered by (class, file name), so a dataset loads identically
from the folder and from its archive.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from shared.data.base import DatasetError, Split

SPLITS: tuple[str, str] = ("train", "test")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar")
# Pillow modes that carry one grey channel; anything else is read as RGB.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_LAYOUT = "train/<class>/<image> and test/<class>/<image>"


@dataclass(frozen=True)
class _Entry:
    split: str
    label: str
    name: str
    where: str
    """what an error message calls the file: its path, or archive:member."""
    data: bytes


@dataclass(frozen=True)
class ImageFolder:
    """Both splits as decoded, plus the encoded size of every image (a device holds the file, not pixels)."""

    train: Split
    test: Split
    classes: list[str]
    train_bytes: np.ndarray
    """(N_train,) int64: size of each training image's file, in the order of ``train``."""
    test_bytes: np.ndarray
    """(N_test,) int64: size of each test image's file, in the order of ``test``."""


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") for p in parts)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def find_source(data_dir: Path) -> Path:
    """The folder or archive to read: ``data_dir`` itself, or the one archive it holds."""
    path = Path(data_dir)
    if is_archive(path):
        return path
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory or a tar archive; expected {_LAYOUT}")
    if all((path / s).is_dir() for s in SPLITS):
        return path
    archives = sorted(p for p in path.iterdir() if is_archive(p))
    if len(archives) == 1:
        return archives[0]
    if archives:
        names = ", ".join(p.name for p in archives)
        raise DatasetError(f"{path}: holds several archives ({names}); pass the one to read as --data-dir")
    raise DatasetError(f"{path}: expected {_LAYOUT} (unpacked, or in one .tar/.tar.gz archive)")


def _entry(split: str, rel: tuple[str, ...], where: str, data: bytes) -> _Entry:
    if len(rel) != 2:
        raise DatasetError(f"{where}: expected {split}/<class>/<image>, not a deeper or shallower path")
    return _Entry(split=split, label=rel[0], name=rel[1], where=where, data=data)


def _from_directory(root: Path) -> Iterator[_Entry]:
    for split in SPLITS:
        base = root / split
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).parts
            if path.is_dir() or _hidden(rel):
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DatasetError(f"{path}: unreadable ({exc})") from exc
            yield _entry(split, rel, str(path), data)


def _from_archive(archive: Path) -> Iterator[_Entry]:
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar if m.isfile()]
            paths = [PurePosixPath(m.name).parts for m in members]
            # The split folders may sit at the archive's top or under one folder (cifar10/train/...).
            prefix = 0 if any(p[0] in SPLITS for p in paths if p) else 1
            for member, parts in zip(members, paths, strict=True):
                rel = parts[prefix:]
                if len(rel) < 2 or rel[0] not in SPLITS or _hidden(rel):
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    raise DatasetError(f"{archive}:{member.name}: unreadable member")
                yield _entry(rel[0], rel[1:], f"{archive}:{member.name}", handle.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{archive}: not a readable tar archive ({exc})") from exc


def _open(entry: _Entry, *, load: bool):  # -> PIL.Image.Image
    """Open with Pillow; ``load`` decodes the pixels too, so a truncated file fails here, naming it."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - Pillow is a core dependency
        raise DatasetError("image folders need Pillow (pip install pillow)") from exc
    try:
        image = Image.open(io.BytesIO(entry.data))
        if load:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{entry.where}: not a readable image ({exc})") from exc
    return image


def _pixels(entry: _Entry, *, grey: bool, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) uint8 of one image, converted and resized to ``size`` (H, W)."""
    from PIL import Image

    image = _open(entry, load=True).convert("L" if grey else "RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL sizes are (W, H)
    array = np.asarray(image, dtype=np.uint8)
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1))  # (C, H, W)


def load_image_folder(data_dir: Path, *, size: tuple[int, int] | None = None) -> ImageFolder:
    """Both splits of the image folder at (or archived in) ``data_dir``, decoded to (N, C, H, W) uint8."""
    source = find_source(Path(data_dir))
    entries = list(_from_archive(source) if is_archive(source) else _from_directory(source))
    by_split = {s: sorted((e for e in entries if e.split == s), key=lambda e: (e.label, e.name)) for s in SPLITS}
    classes = sorted({e.label for e in by_split["train"]})
    if not classes:
        raise DatasetError(f"{source}: no images under train/<class>/; expected {_LAYOUT}")
    extra = sorted({e.label for e in by_split["test"]} - set(classes))
    if extra:
        raise DatasetError(f"{source}: test/ has classes that train/ lacks: {', '.join(extra)}")
    if not by_split["test"]:
        raise DatasetError(f"{source}: no images under test/<class>/; expected {_LAYOUT}")
    # Headers only (no pixels yet): the channel count and, without `size`, the one common size.
    headers = {s: [_open(e, load=False) for e in by_split[s]] for s in SPLITS}
    grey = all(img.mode in _GREY_MODES for s in SPLITS for img in headers[s])
    if size is None:
        first = headers["train"][0].size
        for s in SPLITS:
            for img, e in zip(headers[s], by_split[s], strict=True):
                if img.size != first:
                    raise DatasetError(f"{e.where}: {img.size[0]}x{img.size[1]} pixels, but "
                                       f"{by_split['train'][0].where} is {first[0]}x{first[1]}; pass an image "
                                       "size to resize them all")
        size = (first[1], first[0])
    del headers
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, Split] = {}
    sizes: dict[str, np.ndarray] = {}
    for s in SPLITS:
        x = np.stack([_pixels(e, grey=grey, size=size) for e in by_split[s]])
        splits[s] = Split(x=x, y=np.array([index[e.label] for e in by_split[s]], dtype=np.int64))
        sizes[s] = np.array([len(e.data) for e in by_split[s]], dtype=np.int64)
    return ImageFolder(train=splits["train"], test=splits["test"], classes=classes,
                       train_bytes=sizes["train"], test_bytes=sizes["test"])
