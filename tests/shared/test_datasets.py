"""shared.datasets: real digits and MNIST, tiny files in every other format, and hostile input."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.data import cifar, idx, svhn
from shared.datasets import (
    DATASETS,
    FASHION_CLASSES,
    Dataset,
    DatasetError,
    Split,
    input_spec,
    load_dataset,
    normalize,
)
from tests.shared.formats import (
    idx_bytes,
    make_cifar_dir,
    make_idx_dir,
    make_svhn_dir,
    write_idx_gz,
    write_svhn_mat,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"


def _rows(*splits: Split) -> list[bytes]:
    """Each sample (pixels + label) as bytes, sorted: equal lists mean equal multisets of samples."""
    return sorted(
        s.x[i].tobytes() + s.y[i].tobytes() for s in splits for i in range(len(s))
    )


def _assert_well_formed(ds: Dataset, *, shape: tuple[int, int, int], max_pixel: int) -> None:
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == np.uint8 and split.y.dtype == np.int64
        assert split.x.shape[1:] == shape
        assert split.x.max() <= max_pixel
        assert split.y.min() >= 0 and split.y.max() < len(ds.classes)
    assert len(ds.mean) == len(ds.std) == shape[0]


# ----------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def test_digits_shapes_dtypes_and_ranges(digits: Dataset) -> None:
    _assert_well_formed(digits, shape=(1, 8, 8), max_pixel=16)
    assert digits.name == "digits"
    assert digits.classes == [str(d) for d in range(10)]
    # 1797 images: 20% test (359), then 10% of the remaining 1438 as val (144).
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1294, 144, 359)


def test_digits_splits_partition_the_whole_set(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    everything = Split(x=bunch.images.astype(np.uint8)[:, None], y=bunch.target.astype(np.int64))
    assert _rows(digits.train, digits.val, digits.test) == _rows(everything)


def test_splits_are_stratified(digits: Dataset) -> None:
    full = np.bincount(np.concatenate([digits.train.y, digits.val.y, digits.test.y]), minlength=10)
    for split, fraction in ((digits.test, 0.2), (digits.val, 0.1 * 0.8)):
        counts = np.bincount(split.y, minlength=10)
        # Largest-remainder allocation: every class within one sample of its exact share.
        assert np.all(np.abs(counts - full * fraction) <= 1.5), counts


def test_same_seed_same_splits_other_seed_other_splits(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    for a, b in ((digits.train, again.train), (digits.val, again.val), (digits.test, again.test)):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert len(other.val) == len(digits.val)
    assert _rows(other.val) != _rows(digits.val)
    assert _rows(other.test) != _rows(digits.test)


def test_mean_std_are_per_channel_over_raw_train_pixels(digits: Dataset) -> None:
    pixels = digits.train.x.astype(np.float64)
    assert digits.mean == pytest.approx((pixels.mean(),), rel=1e-12)
    assert digits.std == pytest.approx((pixels.std(),), rel=1e-12)


def test_val_fraction_zero_gives_empty_val() -> None:
    ds = load_dataset("digits", seed=0, val_fraction=0.0)
    assert len(ds.val) == 0 and ds.val.x.shape == (0, 1, 8, 8)
    assert len(ds.train) == 1797 - 359


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_val_fraction_is_rejected(fraction: float) -> None:
    with pytest.raises(DatasetError, match=rf"val_fraction.*{fraction}"):
        load_dataset("digits", val_fraction=fraction)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(DatasetError, match="imagenet") as info:
        load_dataset("imagenet")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "svhn"])
def test_on_disk_datasets_need_an_explicit_data_dir(name: str) -> None:
    with pytest.raises(DatasetError, match="--data-dir") as info:
        load_dataset(name)
    expected_file = {"mnist": idx.TRAIN_IMAGES, "fashion-mnist": idx.TEST_LABELS,
                     "cifar10": "cifar10-jpeg.tar.gz", "svhn": svhn.TRAIN_MAT}[name]
    assert expected_file in str(info.value)


def test_data_dir_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------- real MNIST


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not present at {MNIST_DIR}")
def test_real_mnist_loads_with_official_sizes() -> None:
    ds = load_dataset("mnist", data_dir=MNIST_DIR, seed=0)
    _assert_well_formed(ds, shape=(1, 28, 28), max_pixel=255)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    for split in (ds.train, ds.val, ds.test):
        assert set(np.unique(split.y)) == set(range(10))
    # The well-known MNIST training-set statistics, now over the 54000 kept for training.
    assert ds.mean[0] == pytest.approx(33.3, abs=0.3)
    assert ds.std[0] == pytest.approx(78.6, abs=0.3)


# -------------------------------------------------------------------------- IDX (fashion-mnist)


def test_fashion_mnist_from_tiny_idx_files(tmp_path: Path) -> None:
    written = make_idx_dir(tmp_path, n_train=50, n_test=20, side=6)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, seed=3)
    assert ds.classes == FASHION_CLASSES
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    np.testing.assert_array_equal(ds.test.x[:, 0], written[idx.TEST_IMAGES])
    np.testing.assert_array_equal(ds.test.y, written[idx.TEST_LABELS])
    official = Split(x=written[idx.TRAIN_IMAGES][:, None], y=written[idx.TRAIN_LABELS].astype(np.int64))
    assert _rows(ds.train, ds.val) == _rows(official)


def test_idx_md5sums_are_checked_when_present(tmp_path: Path) -> None:
    import hashlib

    make_idx_dir(tmp_path)
    lines = [f"{hashlib.md5((tmp_path / n).read_bytes()).hexdigest()}  {n}" for n in idx.IDX_FILES]
    (tmp_path / "MD5SUMS").write_text("\n".join(lines) + "\n")
    assert len(load_dataset("mnist", data_dir=tmp_path).test) == 20

    lines[1] = f"{'0' * 32}  {idx.TRAIN_LABELS}"
    (tmp_path / "MD5SUMS").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{idx.TRAIN_LABELS}: MD5 [0-9a-f]{{32}} does not match 0{{32}}"):
        load_dataset("mnist", data_dir=tmp_path)

    (tmp_path / "MD5SUMS").write_text("not a checksum line\n")
    with pytest.raises(DatasetError, match=r"MD5SUMS:1: expected"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_idx_file_names_it_and_the_format(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / idx.TEST_LABELS).unlink()
    with pytest.raises(DatasetError, match=rf"{idx.TEST_LABELS}: file not found; expected a gzip'd IDX1"):
        load_dataset("mnist", data_dir=tmp_path)


def test_wrong_magic_is_reported_with_both_numbers(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    raw = bytearray(gzip.decompress((tmp_path / idx.TRAIN_IMAGES).read_bytes()))
    raw[:4] = (1234).to_bytes(4, "big")
    (tmp_path / idx.TRAIN_IMAGES).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetError, match=rf"{idx.TRAIN_IMAGES}: expected a gzip'd IDX3 .*magic 2051\), "
                                           r"got magic 1234"):
        load_dataset("mnist", data_dir=tmp_path)


def test_swapped_images_and_labels_are_caught_by_magic(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    labels = (tmp_path / idx.TEST_LABELS).read_bytes()
    shutil.copy(tmp_path / idx.TEST_IMAGES, tmp_path / idx.TEST_LABELS)
    (tmp_path / idx.TEST_IMAGES).write_bytes(labels)
    with pytest.raises(DatasetError, match=rf"{idx.TEST_IMAGES}: .*got magic 2049"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    path = tmp_path / idx.TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=rf"{idx.TRAIN_IMAGES}: expected a gzip'd IDX3.*not decompress"):
        load_dataset("mnist", data_dir=tmp_path)


def test_file_that_is_not_gzip(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / idx.TRAIN_LABELS).write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DatasetError, match=rf"{idx.TRAIN_LABELS}: expected a gzip'd IDX1.*not decompress"):
        load_dataset("mnist", data_dir=tmp_path)


def test_payload_shorter_than_header_dims(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    images = np.zeros((20, 6, 6), dtype=np.uint8)
    raw = idx_bytes(images, magic=idx.IMAGES_MAGIC)[:-7]  # the gzip is intact, the IDX is not
    (tmp_path / idx.TEST_IMAGES).write_bytes(gzip.compress(raw))
    with pytest.raises(DatasetError, match=r"header dims \(20, 6, 6\) need 720 bytes but the file holds 713"):
        load_dataset("mnist", data_dir=tmp_path)


def test_header_cut_short(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / idx.TEST_IMAGES).write_bytes(gzip.compress(idx.IMAGES_MAGIC.to_bytes(4, "big") + b"\0\0"))
    with pytest.raises(DatasetError, match=rf"{idx.TEST_IMAGES}: .*header cut short"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_and_image_counts_must_agree(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, n_test=20)
    write_idx_gz(tmp_path / idx.TEST_LABELS, np.zeros(19, dtype=np.uint8), magic=idx.LABELS_MAGIC)
    with pytest.raises(DatasetError, match=rf"{idx.TEST_LABELS}: holds 19 labels but .* holds 20 images"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, n_train=50)
    write_idx_gz(tmp_path / idx.TRAIN_LABELS, np.full(50, 11, dtype=np.uint8), magic=idx.LABELS_MAGIC)
    with pytest.raises(DatasetError, match=rf"{idx.TRAIN_LABELS}: expected labels 0-9, found 11"):
        load_dataset("mnist", data_dir=tmp_path)


# ------------------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize(("protocol", "str_keys", "nested"), [(2, False, False), (5, True, True)])
def test_cifar10_from_tiny_pickle_batches(tmp_path: Path, protocol: int, str_keys: bool,
                                          nested: bool) -> None:
    root = tmp_path / cifar.SUBDIR if nested else tmp_path
    written = make_cifar_dir(root, per_batch=20, protocol=protocol, str_keys=str_keys)
    ds = load_dataset("cifar10", data_dir=tmp_path, seed=0)
    _assert_well_formed(ds, shape=(3, 32, 32), max_pixel=255)
    assert ds.classes == cifar.CLASSES
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 20)
    test_rows = written[cifar.TEST_BATCH]["data"]
    # Row layout is 1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane.
    np.testing.assert_array_equal(ds.test.x[7, 1], test_rows[7, 1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(ds.test.y, written[cifar.TEST_BATCH]["labels"])
    train_x = np.concatenate([written[n]["data"] for n in cifar.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    train_y = np.concatenate([written[n]["labels"] for n in cifar.TRAIN_BATCHES])
    assert _rows(ds.train, ds.val) == _rows(Split(x=train_x, y=train_y))
    assert len(ds.mean) == 3
    assert ds.mean[2] == pytest.approx(ds.train.x[:, 2].astype(np.float64).mean(), rel=1e-12)


class _Touch:
    """A pickle payload that, if ever unpickled by a plain Unpickler, creates `target`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.target), "w")


class _Shell:
    """A payload that would run a shell command through os.system."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("payload", [_Touch, _Shell])
@pytest.mark.parametrize("victim", [cifar.TRAIN_BATCHES[2], cifar.META])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload: type, victim: str) -> None:
    make_cifar_dir(tmp_path, per_batch=10)
    marker = tmp_path / "pwned"
    evil = {b"data": payload(marker), b"labels": [0], b"label_names": payload(marker)}
    (tmp_path / victim).write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError, match=rf"{victim}: expected a CIFAR-10 python pickle.*refusing global"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_truncated_pickle(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, per_batch=10)
    path = tmp_path / cifar.TEST_BATCH
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match=rf"{cifar.TEST_BATCH}: expected a CIFAR-10 python pickle"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ([1, 2, 3], "got a list"),
        ({b"data": np.zeros((4, 3072), dtype=np.float32), b"labels": [0] * 4}, r"\(4, 3072\) float32"),
        ({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, r"got data \(4, 100\) uint8"),
        ({b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0] * 3}, r"got \(3,\) labels for 4"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}, r"labels span 0\.\.10"),
    ],
)
def test_well_formed_pickle_with_wrong_content(tmp_path: Path, content: object, complaint: str) -> None:
    make_cifar_dir(tmp_path, per_batch=10)
    (tmp_path / cifar.TRAIN_BATCHES[0]).write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError, match=rf"{cifar.TRAIN_BATCHES[0]}: .*{complaint}"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_missing_cifar_batch(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, per_batch=10)
    (tmp_path / cifar.TRAIN_BATCHES[4]).unlink()
    with pytest.raises(DatasetError, match=rf"{cifar.TRAIN_BATCHES[4]}: file not found; expected a CIFAR-10"):
        load_dataset("cifar10", data_dir=tmp_path)


# ------------------------------------------------------------------------------------------- SVHN


def test_svhn_from_tiny_mat_files_maps_10_to_0(tmp_path: Path) -> None:
    written = make_svhn_dir(tmp_path, n_train=40, n_test=20)
    ds = load_dataset("svhn", data_dir=tmp_path, seed=0)
    _assert_well_formed(ds, shape=(3, 32, 32), max_pixel=255)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 4, 20)
    x_hwcn, y = written[svhn.TEST_MAT]
    np.testing.assert_array_equal(ds.test.y, np.where(y == 10, 0, y))
    assert 10 not in set(ds.train.y) | set(ds.val.y) and 0 in set(ds.test.y)
    # (H, W, C, N) -> (N, C, H, W): pixel (h=5, w=9) of channel 2 of image 3.
    assert ds.test.x[3, 2, 5, 9] == x_hwcn[5, 9, 2, 3]
    np.testing.assert_array_equal(ds.test.x[11], x_hwcn[..., 11].transpose(2, 0, 1))


def test_corrupt_mat_file(tmp_path: Path) -> None:
    make_svhn_dir(tmp_path)
    (tmp_path / svhn.TRAIN_MAT).write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 50)
    with pytest.raises(DatasetError, match=rf"{svhn.TRAIN_MAT}: expected a MATLAB v5 .mat file"):
        load_dataset("svhn", data_dir=tmp_path)


def test_mat_file_with_bad_labels_or_shape(tmp_path: Path) -> None:
    make_svhn_dir(tmp_path, n_test=4)
    x = np.zeros((32, 32, 3, 4), dtype=np.uint8)
    write_svhn_mat(tmp_path / svhn.TEST_MAT, x, np.array([0, 1, 2, 3], dtype=np.uint8))
    with pytest.raises(DatasetError, match=rf"{svhn.TEST_MAT}: .*labels span 0\.\.3"):
        load_dataset("svhn", data_dir=tmp_path)
    write_svhn_mat(tmp_path / svhn.TEST_MAT, np.zeros((28, 28, 1, 4), dtype=np.uint8), np.ones(4))
    with pytest.raises(DatasetError, match=rf"{svhn.TEST_MAT}: .*got X \(28, 28, 1, 4\) uint8"):
        load_dataset("svhn", data_dir=tmp_path)


def test_missing_mat_file(tmp_path: Path) -> None:
    make_svhn_dir(tmp_path)
    (tmp_path / svhn.TEST_MAT).unlink()
    with pytest.raises(DatasetError, match=rf"{svhn.TEST_MAT}: file not found; expected a MATLAB v5"):
        load_dataset("svhn", data_dir=tmp_path)


# --------------------------------------------------------------------------- normalize, spec, types


def test_normalize_matches_hand_computation() -> None:
    x = np.array([[[[0, 10]], [[255, 5]]]], dtype=np.uint8)  # (1, 2, 1, 2)
    out = normalize(x, (10.0, 5.0), (2.0, 5.0))
    assert out.dtype == np.float32 and out.shape == (1, 2, 1, 2)
    expected = np.array([[[[(0 - 10) / 2, (10 - 10) / 2]], [[(255 - 5) / 5, (5 - 5) / 5]]]])
    np.testing.assert_allclose(out, expected)


def test_normalize_of_a_dataset_has_zero_mean_unit_std_on_train(digits: Dataset) -> None:
    z = normalize(digits.train.x, digits.mean, digits.std).astype(np.float64)
    assert z.mean() == pytest.approx(0.0, abs=1e-5)
    assert z.std() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("shape", "mean", "std", "complaint"),
    [
        ((2, 8, 8), (0.0,), (1.0,), r"expects \(N, C, H, W\)"),
        ((2, 3, 4, 4), (0.0,), (1.0,), "one mean and std per channel"),
        ((2, 1, 4, 4), (0.0,), (0.0,), r"finite positive std, got \[0\.0\] and \[0\.0\]"),
    ],
)
def test_normalize_rejects_bad_arguments(shape: tuple[int, ...], mean: tuple[float, ...],
                                         std: tuple[float, ...], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        normalize(np.zeros(shape, dtype=np.uint8), mean, std)


def test_input_spec_is_the_manifest_input_block(digits: Dataset) -> None:
    spec = input_spec(digits)
    assert spec == {"shape": [1, 8, 8], "dtype": "uint8", "mean": [digits.mean[0]], "std": [digits.std[0]]}
    assert all(type(v) is float for v in spec["mean"] + spec["std"])


def test_split_rejects_wrong_dtypes_and_lengths() -> None:
    with pytest.raises(DatasetError, match="float32"):
        Split(x=np.zeros((2, 1, 4, 4), dtype=np.float32), y=np.zeros(2, dtype=np.int64))
    with pytest.raises(DatasetError, match="int32"):
        Split(x=np.zeros((2, 1, 4, 4), dtype=np.uint8), y=np.zeros(2, dtype=np.int32))
    with pytest.raises(DatasetError, match="2 images but 3 labels"):
        Split(x=np.zeros((2, 1, 4, 4), dtype=np.uint8), y=np.zeros(3, dtype=np.int64))


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_importing_datasets_pulls_in_neither_torch_nor_sklearn() -> None:
    code = ("import sys, shared.datasets; "
            "print(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_pickle_naming_the_legacy_numpy_core_module_loads(tmp_path: Path) -> None:
    # The published batches were written by Python 2 with numpy 1.x, which names numpy.core.multiarray.
    written = make_cifar_dir(tmp_path, per_batch=10, protocol=2)
    path = tmp_path / cifar.TEST_BATCH
    legacy = path.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in legacy
    path.write_bytes(legacy)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.test.x.reshape(10, -1), written[cifar.TEST_BATCH]["data"])
