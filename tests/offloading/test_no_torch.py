from __future__ import annotations

import subprocess
import sys


def test_offloading_never_imports_torch() -> None:
    # The edge (a Raspberry Pi without torch) imports this package, filters and offloader included.
    code = (
        "import sys, offloading.features, offloading.filters, offloading.models, offloading.qbc, "
        "offloading.operating_point, offloading.train, offloading.report, offloading.calibration, "
        "offloading.fusion, offloading.comparison\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision'})\n"
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
