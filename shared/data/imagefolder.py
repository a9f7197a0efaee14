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

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from shared.data.base import DatasetError, Split
from shared.image_codec import GREY_MODES, ImageDecodeError, open_image, pixels_of

SPLITS: tuple[str, str] = ("train", "test")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar")
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
    test_files: tuple[bytes, ...] = ()
    """every test file, byte for byte, in the order of ``test`` (what a device would send; CIFAR-10: 10 MB)"""
    source: str = ""
    """the folder or archive read"""


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
        return open_image(entry.data, where=entry.where, load=load)
    except ImageDecodeError as exc:
        raise DatasetError(str(exc)) from exc


def _pixels(entry: _Entry, *, grey: bool, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) uint8 of one image, converted and resized to ``size`` (H, W), as a served file is."""
    return pixels_of(_open(entry, load=True), channels=1 if grey else 3, size=size)


def _entries(data_dir: Path) -> tuple[Path, dict[str, list[_Entry]]]:
    source = find_source(Path(data_dir))
    entries = list(_from_archive(source) if is_archive(source) else _from_directory(source))
    return source, {s: sorted((e for e in entries if e.split == s), key=lambda e: (e.label, e.name)) for s in SPLITS}


def _decode_all(groups: list[list[_Entry]], classes: list[str], size: tuple[int, int] | None, *,
                channels: int | None = None) -> list[tuple[Split, np.ndarray]]:
    """Every group decoded with one channel count and one size: (Split, encoded bytes) per group."""
    # Headers only (no pixels yet): the channel count and, without `size`, the one common size.
    headers = [[_open(e, load=False) for e in group] for group in groups]
    grey = channels == 1 if channels is not None else all(
        img.mode in GREY_MODES for group in headers for img in group)
    if size is None:
        first, where = headers[0][0].size, groups[0][0].where
        for group, entries in zip(headers, groups, strict=True):
            for img, e in zip(group, entries, strict=True):
                if img.size != first:
                    raise DatasetError(f"{e.where}: {img.size[0]}x{img.size[1]} pixels, but {where} is "
                                       f"{first[0]}x{first[1]}; pass an image size to resize them all")
        size = (first[1], first[0])
    del headers
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for entries in groups:
        x = np.stack([_pixels(e, grey=grey, size=size) for e in entries])
        split = Split(x=x, y=np.array([index[e.label] for e in entries], dtype=np.int64))
        out.append((split, np.array([len(e.data) for e in entries], dtype=np.int64)))
    return out


def load_image_folder(data_dir: Path, *, size: tuple[int, int] | None = None) -> ImageFolder:
    """Both splits of the image folder at (or archived in) ``data_dir``, decoded to (N, C, H, W) uint8."""
    source, by_split = _entries(data_dir)
    classes = sorted({e.label for e in by_split["train"]})
    if not classes:
        raise DatasetError(f"{source}: no images under train/<class>/; expected {_LAYOUT}")
    extra = sorted({e.label for e in by_split["test"]} - set(classes))
    if extra:
        raise DatasetError(f"{source}: test/ has classes that train/ lacks: {', '.join(extra)}")
    if not by_split["test"]:
        raise DatasetError(f"{source}: no images under test/<class>/; expected {_LAYOUT}")
    (train, train_bytes), (test, test_bytes) = _decode_all([by_split["train"], by_split["test"]], classes, size)
    return ImageFolder(train=train, test=test, classes=classes, train_bytes=train_bytes, test_bytes=test_bytes,
                       test_files=tuple(e.data for e in by_split["test"]), source=str(source))


def load_image_split(data_dir: Path, split: str, *, classes: list[str], shape: tuple[int, int, int]
                     ) -> tuple[Split, tuple[bytes, ...]]:
    """One split (e.g. a test sample with no train/) labelled with a bundle's ``classes`` and decoded to
    its input ``shape`` (C, H, W); returns the split and each image's file, byte for byte, in its order."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    source, by_split = _entries(data_dir)
    if not by_split[split]:
        raise DatasetError(f"{source}: no images under {split}/<class>/; expected {_LAYOUT}")
    unknown = sorted({e.label for e in by_split[split]} - set(classes))
    if unknown:
        raise DatasetError(f"{source}: {split}/ has classes the model does not know: {', '.join(unknown)}")
    ((x, _),) = _decode_all([by_split[split]], list(classes), (shape[1], shape[2]), channels=shape[0])
    return x, tuple(e.data for e in by_split[split])
