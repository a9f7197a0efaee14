"""`edgecloud eval --link PROFILE`: the Table VII comparison with the edge and the cloud on either side of a link.

The cloud server runs in the cloud namespace, the edge agent and the evaluation client in the edge
namespace. The client talks to the edge on its loopback, as a camera on the device would; every
offload (all of cloud-only, the hard samples of cooperation) crosses the shaped link to the cloud.
Before the services start, the link itself is measured (`check`), and the numbers go in the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecloud.evaluation.report import write_markdown
from testbed.bed import testbed
from testbed.check import measure_on
from testbed.linkcheck import judge
from testbed.netns import DelayMode, TestbedError, python_argv
from testbed.profiles import LinkProfile

EDGE_PORT, CLOUD_PORT = 8000, 8001


def eval_over_link(profile: LinkProfile, *, bundle: Path, out: Path, eval_args: Sequence[str] = (),
                   cloud_args: Sequence[str] = (), edge_args: Sequence[str] = (), tag: str | None = None,
                   delay: DelayMode = "auto", check: bool = True, edge_cpus: frozenset[int] | None = None,
                   cloud_cpus: frozenset[int] | None = None) -> dict[str, Any]:
    """Run `edgecloud eval EVAL_ARGS` across the link; return its report with a `link` section added.

    EDGE_CPUS / CLOUD_CPUS pin the edge agent / the cloud server to cores of their own, so the
    teacher's compute for offloaded samples does not slow the edge, as on two machines. The
    evaluation client and the delay proxy stay unpinned.
    """
    bundle, out = bundle.resolve(), out.resolve()
    log_dir = out / "logs"
    cpus = {side: c for side, c in (("edge", edge_cpus), ("cloud", cloud_cpus)) if c is not None}
    with testbed(profile, log_dir=log_dir, tag=tag, delay=delay, cpus=cpus) as bed:
        link: dict[str, Any] = {"profile": profile.name, "rate_mbit": profile.rate_mbit, "rtt_ms": profile.rtt_ms,
                                "delay": bed.delay_label,
                                "cpus": {side: sorted(c) for side, c in cpus.items()}}
        if check:
            measured = measure_on(bed)
            link["measured"] = measured.__dict__
            link["checks"] = [{**v.__dict__, "ok": v.ok} for v in judge(profile, measured)]
        host, port = bed.serve_across(CLOUD_PORT)
        bed.start_edgecloud("cloud", "cloud", ["cloud", "serve", "--bundle", str(bundle), *cloud_args],
                            host=host, port=port)
        cloud_url = f"http://{bed.link.cloud_ip}:{CLOUD_PORT}"
        edge_url = f"http://127.0.0.1:{EDGE_PORT}"
        bed.start_edgecloud("edge", "edge", ["edge", "serve", "--bundle", str(bundle), "--cloud-url", cloud_url,
                                             *edge_args], host="127.0.0.1", port=EDGE_PORT)
        # The client waits for both services itself (the cloud's readiness across the link).
        code = bed.run_in_edge(python_argv("edgecloud", "eval", "--bundle", str(bundle), "--edge-url", edge_url,
                                           "--cloud-url", cloud_url, "--out", str(out), *eval_args))
        if code != 0:
            raise TestbedError(f"`edgecloud eval` across the {profile.name} link exited {code}; "
                               f"service logs are in {log_dir}")
    report_path = out / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["link"] = link
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out)
    return report
