"""`check PROFILE`: bring the link up, measure its RTT and goodput across it, compare with the profile."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed import linkcheck
from testbed.bed import Bed, testbed, wait_for_line
from testbed.linkcheck import Measurement, Verdict, judge
from testbed.netns import DelayMode, TestbedError, python_argv
from testbed.profiles import LinkProfile

CHECK_PORT = 5201


@dataclass(frozen=True)
class CheckResult:
    profile: LinkProfile
    delay: str               # how the delay was made (netem, or the labelled emulation)
    measurement: Measurement
    verdicts: list[Verdict]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def to_dict(self) -> dict[str, object]:
        return {"profile": self.profile.name, "rate_mbit": self.profile.rate_mbit, "rtt_ms": self.profile.rtt_ms,
                "delay": self.delay, "ok": self.ok, "measured": self.measurement.__dict__,
                "checks": [{**v.__dict__, "ok": v.ok} for v in self.verdicts]}

    def table(self) -> str:
        rows = [f"link {self.profile.name}: {self.profile.rate_mbit:g} Mbit/s, {self.profile.rtt_ms:g} ms RTT; "
                f"{self.delay}",
                f"{'metric':<10} {'target':>9} {'measured':>9}  {'accepted':<17} ok"]
        for v in self.verdicts:
            rows.append(f"{v.metric:<10} {v.target:>9.2f} {v.measured:>9.2f}  [{v.low:.2f}, {v.high:.2f}]"
                        f"{'':<2} {'yes' if v.ok else 'NO'}")
        rows.append(f"(rtt_ms is the fastest of 25 echoes; their median was {self.measurement.rtt_median_ms:.2f} ms)")
        return "\n".join(rows)


def measure_on(bed: Bed, *, seconds: float = 1.5) -> Measurement:
    """Run the linkcheck server behind the link and the client in the edge namespace."""
    host, port = bed.serve_across(CHECK_PORT)
    server = bed.spawn("cloud", "linkcheck-server", python_argv(
        "testbed.linkcheck", "serve", "--host", host, "--port", str(port)))
    wait_for_line(server, linkcheck.READY_LINE)
    with tempfile.TemporaryFile() as out:
        code = bed.run_in_edge(python_argv(
            "testbed.linkcheck", "measure", "--host", bed.link.cloud_ip, "--port",
            str(CHECK_PORT), "--rate-mbit", str(bed.link.profile.rate_mbit), "--seconds", str(seconds)), stdout=out)
        out.seek(0)
        text = out.read().decode()
    if code != 0:
        raise TestbedError(f"the link measurement failed ({code}): {text}")
    return Measurement(**json.loads(text))


def check_link(profile: LinkProfile, *, log_dir: Path, tag: str | None = None, delay: DelayMode = "auto",
               seconds: float = 1.5) -> CheckResult:
    with testbed(profile, log_dir=log_dir, tag=tag, delay=delay) as bed:
        measurement = measure_on(bed, seconds=seconds)
        return CheckResult(profile, bed.delay_label, measurement, judge(profile, measurement))
