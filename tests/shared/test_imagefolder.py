"""shared.data.imagefolder and the cifar10 / imagefolder datasets: folders and archives as users keep them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.data import cifar
from shared.data.imagefolder import find_source, load_image_folder
from shared.datasets import DatasetError, load_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_DIR = REPO_ROOT.parent / "shared" / "data" / "cifar10"


def _image(rgb: tuple[int, int, int], size: tuple[int, int] = (6, 4), mode: str = "RGB") -> Image.Image:
    """A flat image of one colour, ``size`` (W, H)."""
    image = Image.new("RGB", size, rgb)
    return image.convert(mode)


def _save(path: Path, image: Image.Image, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def _folder(root: Path, *, size: tuple[int, int] = (6, 4), mode: str = "RGB") -> Path:
    """cats are red, dogs are blue; 3 + 2 training images, 1 + 1 test images (PNG: lossless)."""
    for split, counts in (("train", {"cat": 3, "dog": 2}), ("test", {"cat": 1, "dog": 1})):
        for label, n in counts.items():
            colour = (200, 10, 10) if label == "cat" else (10, 10, 200)
            for i in range(n):
                _save(root / split / label / f"{i:03d}.png", _image(colour, size, mode))
    return root


def _tar(src: Path, archive: Path, *, top: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                rel = path.relative_to(src).as_posix()
                tar.add(path, arcname=f"{top}/{rel}" if top else rel)
    return archive


def test_folder_classes_labels_pixels_and_order(tmp_path: Path) -> None:
    folder = load_image_folder(_folder(tmp_path / "pets"))
    assert folder.classes == ["cat", "dog"]
    assert folder.train.x.shape == (5, 3, 4, 6) and folder.train.x.dtype == np.uint8
    assert folder.train.y.tolist() == [0, 0, 0, 1, 1] and folder.test.y.tolist() == [0, 1]
    assert folder.train.x[0, :, 0, 0].tolist() == [200, 10, 10]  # (C, H, W): red cat
    assert folder.test.x[1, :, 0, 0].tolist() == [10, 10, 200]
    assert (folder.train_bytes > 0).all() and len(folder.test_bytes) == 2


@pytest.mark.parametrize("top", [None, "pets"])
def test_archive_loads_exactly_as_the_folder(tmp_path: Path, top: str | None) -> None:
    src = _folder(tmp_path / "pets")
    archive = _tar(src, tmp_path / "pets.tar.gz", top=top)
    from_tar, from_dir = load_image_folder(archive), load_image_folder(src)
    np.testing.assert_array_equal(from_tar.train.x, from_dir.train.x)
    np.testing.assert_array_equal(from_tar.test.y, from_dir.test.y)
    # A directory holding the one archive is read through it too (../shared/data/cifar10 is laid out so).
    holder = tmp_path / "holder"
    holder.mkdir()
    archive.rename(holder / archive.name)
    assert find_source(holder) == holder / archive.name


def test_any_size_is_resized_and_mixed_sizes_need_a_size(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    _save(root / "train" / "dog" / "big.jpg", _image((10, 10, 200), (64, 48)), "JPEG")
    with pytest.raises(DatasetError, match=r"big\.jpg: 64x48 pixels.*image size"):
        load_image_folder(root)
    folder = load_image_folder(root, size=(8, 8))
    assert folder.train.x.shape == (6, 3, 8, 8)
    ds = load_dataset("imagefolder", data_dir=root)  # 32x32 by default, the CIFAR-style networks' input
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.classes == ["cat", "dog"]
    assert load_dataset("imagefolder", data_dir=root, image_size=12).test.x.shape[1:] == (3, 12, 12)


def test_greyscale_stays_one_channel_unless_any_image_has_colour(tmp_path: Path) -> None:
    grey = load_image_folder(_folder(tmp_path / "grey", mode="L"))
    assert grey.train.x.shape[1] == 1
    root = _folder(tmp_path / "mixed", mode="L")
    _save(root / "test" / "cat" / "colour.png", _image((200, 10, 10)))
    assert load_image_folder(root).train.x.shape[1] == 3


def test_a_corrupt_image_is_an_error_naming_it(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match=r"train/cat/broken\.jpg: not a readable image"):
        load_image_folder(root)


def test_a_truncated_image_in_an_archive_names_the_member(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    buffer = io.BytesIO()
    _image((1, 2, 3), (40, 40)).save(buffer, format="JPEG")
    (root / "test" / "dog" / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    archive = _tar(root, tmp_path / "pets.tgz")
    with pytest.raises(DatasetError, match=r"pets\.tgz:test/dog/cut\.jpg: not a readable image"):
        load_image_folder(archive)


def test_hidden_files_are_skipped_but_nothing_else_is(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    assert len(load_image_folder(root).train.y) == 5
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"notes\.txt: not a readable image"):
        load_image_folder(root)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: (r / "test" / "cow").mkdir() or _save(r / "test" / "cow" / "a.png", _image((0, 0, 0))),
     "test/ has classes that train/ lacks: cow"),
    (lambda r: _save(r / "train" / "cat" / "deep" / "a.png", _image((0, 0, 0))), "deeper or shallower"),
])
def test_layout_errors_name_the_problem(tmp_path: Path, mutate, message: str) -> None:
    root = _folder(tmp_path / "pets")
    mutate(root)
    with pytest.raises(DatasetError, match=message):
        load_image_folder(root)


def test_a_folder_without_the_layout_says_what_it_expects(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"train/<class>/<image>"):
        load_image_folder(tmp_path)
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("imagefolder")


def test_cifar10_refuses_folders_that_are_not_its_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not CIFAR-10's"):
        load_dataset("cifar10", data_dir=_folder(tmp_path / "pets"))


@pytest.mark.skipif(not CIFAR_DIR.is_dir(), reason=f"CIFAR-10 JPEGs not present at {CIFAR_DIR}")
def test_real_cifar10_jpegs_load_with_official_sizes() -> None:
    ds = load_dataset("cifar10", data_dir=CIFAR_DIR, seed=0)
    assert (len(ds.train.y), len(ds.val.y), len(ds.test.y)) == (45_000, 5_000, 10_000)
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.classes == cifar.CLASSES
    assert np.bincount(ds.test.y).tolist() == [1_000] * 10
    # JPEG-decoded CIFAR-10: channel means within a pixel level of the published ones (125.3, 123.0, 113.9).
    np.testing.assert_allclose(ds.mean, (125.3, 123.0, 113.9), atol=1.5)


def test_one_split_with_a_models_classes_and_shape(tmp_path: Path) -> None:
    from shared.data.imagefolder import load_image_split

    root = _folder(tmp_path / "pets")
    test, files = load_image_split(root, "test", classes=["bird", "cat", "dog"], shape=(3, 8, 8))
    assert test.y.tolist() == [1, 2] and test.x.shape == (2, 3, 8, 8) and len(files) == 2
    # The files are the split's own, in its order: decoding them again gives its pixels.
    from shared.image_codec import decode_batch
    np.testing.assert_array_equal(decode_batch(np.array(files, dtype=object), shape=(3, 8, 8)), test.x)
    grey, _ = load_image_split(root, "test", classes=["cat", "dog"], shape=(1, 4, 6))
    assert grey.x.shape == (2, 1, 4, 6)
    with pytest.raises(DatasetError, match="classes the model does not know: dog"):
        load_image_split(root, "test", classes=["cat"], shape=(3, 4, 6))
