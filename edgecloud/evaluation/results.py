"""The paper's Table VII across links: one block of rows per link, from `edgecloud eval --link` reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgecloud.evaluation.driver import STRATEGIES
from shared.names import Strategy

STRATEGY_NAMES = {Strategy.EDGE_ONLY: "edge-only", Strategy.CLOUD_ONLY: "cloud-only",
                  Strategy.COOPERATION: "cooperation"}


def _link_cell(link: dict[str, Any]) -> str:
    cell = f"{link['profile']} ({link['rate_mbit']:g} Mbit/s, {link['rtt_ms']:g} ms)"
    measured = link.get("measured")
    if measured:
        cell += (f"<br>measured {measured['rtt_ms']:.1f} ms, {measured['up_mbit']:.1f}/"
                 f"{measured['down_mbit']:.1f} Mbit/s")
    failed = [c["metric"] for c in link.get("checks", []) if not c["ok"]]
    if failed:
        cell += f" (outside tolerance: {', '.join(failed)})"
    return cell


def results_table(reports: Sequence[dict[str, Any]]) -> str:
    """Runtime, accuracy and offload rate per strategy and link, then the two runtime ratios per link.

    With several rounds per strategy (eval --repeat) every runtime is that strategy's median round.
    """
    rows = ["| link | strategy | runtime (s) | accuracy | offload rate | p50 latency (ms) | answered |",
            "|---|---|---:|---:|---:|---:|---:|"]
    ratios = ["| link | samples | batch × in flight | rounds | cooperation / edge-only runtime "
              "| cloud-only / cooperation runtime | time saved against cloud-only |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for report in reports:
        link = report.get("link")
        if link is None:
            raise ValueError(f"report of {report.get('bundle')} was not made across a link (no 'link' section)")
        strategies = report["strategies"]
        first = True
        for key, name in STRATEGY_NAMES.items():
            if key not in strategies:
                continue
            s = strategies[key]
            cell, first = (_link_cell(link) if first else ""), False  # the link once per block of rows
            rows.append(f"| {cell} | {name} | {s['runtime_s']:.2f} | {100 * s['accuracy']:.2f}% "
                        f"| {100 * s['offload_rate']:.1f}% | {s['p50_ms']:.1f} | {s['answered']}/{s['samples']} |")
        if set(STRATEGY_NAMES) <= strategies.keys():
            edge, cloud, coop = (strategies[k]["runtime_s"] for k in STRATEGIES)
            # Runtimes are each strategy's median round when the evaluation ran several (eval --repeat).
            shape = f"{report.get('batch_size', '?')} × {report.get('concurrency', '?')}"
            rounds = report.get("repeat", 1)
            ratios.append(f"| {link['profile']} | {report['samples']} | {shape} | {rounds} | {coop / edge:.2f}x "
                          f"| {cloud / coop:.2f}x | {100 * (1 - coop / cloud):.1f}% |")
    return "\n".join(rows) + "\n\n" + "\n".join(ratios)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgecloud.evaluation.results REPORT_DIR...` (deploy/testbed/testbed.sh table): print the table."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="markdown table of reports written by `edgecloud eval --link`")
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT_DIR", help="directories with report.json")
    args = parser.parse_args(argv)
    print(results_table([json.loads((path / "report.json").read_text()) for path in args.reports]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
