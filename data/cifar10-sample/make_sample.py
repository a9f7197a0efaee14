"""Write cifar10-test-1000.tar.gz: the first 100 test images of each CIFAR-10 class, byte for byte.

    python data/cifar10-sample/make_sample.py ../shared/data/cifar10/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

PER_CLASS = 100
OUT = Path(__file__).with_name("cifar10-test-1000.tar.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, help="the CIFAR-10 JPEG archive (train/ and test/ class folders)")
    args = parser.parse_args()
    buffer = io.BytesIO()
    with tarfile.open(args.archive) as src, tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as out:
        members = sorted((m for m in src if m.isfile() and m.name.startswith("test/")), key=lambda m: m.name)
        taken: dict[str, int] = {}
        for member in members:
            label = member.name.split("/")[1]
            if taken.get(label, 0) >= PER_CLASS:
                continue
            taken[label] = taken.get(label, 0) + 1
            data = src.extractfile(member).read()
            info = tarfile.TarInfo(member.name)
            info.size, info.mode = len(data), 0o644  # mtime, uid, gid already 0: the archive is reproducible
            out.addfile(info, io.BytesIO(data))
    with gzip.GzipFile(OUT, "wb", mtime=0, compresslevel=9) as handle:
        handle.write(buffer.getvalue())
    print(f"{OUT}: {sum(taken.values())} images")


if __name__ == "__main__":
    main()
