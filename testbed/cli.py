"""`python -m testbed` (deploy/testbed/testbed.sh): check, run, cleanup.

Exit codes: 0 done (and, for check, every measurement within tolerance), 1 a measurement out of
tolerance, 2 the testbed could not run (not root, no iproute2, a namespace in the way, ...), else
the exit code of `run`'s command.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from testbed.netns import DELAY_MODES, NS_PREFIX, TestbedError
from testbed.profiles import PROFILES, get_profile


def _add_link_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None,
                        help="tag in the namespace names ectb-NAME-edge/-cloud (1-8 of a-z0-9; default from the pid)")
    parser.add_argument("--delay", choices=DELAY_MODES, default="auto",
                        help="auto: netem if the kernel has it, else the EMULATED user-space delay proxy (shim)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed", description="Edge and cloud in two network namespaces joined by a shaped veth pair "
                                    "(needs root). Profiles: " + ", ".join(
                                        f"{p.name} ({p.rate_mbit:g} Mbit/s, {p.rtt_ms:g} ms)"
                                        for p in PROFILES.values()))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="bring a link up, measure RTT and goodput across it, print measured "
                                         "against target, tear it down")
    check.add_argument("profiles", nargs="*", default=list(PROFILES), metavar="PROFILE",
                       help=f"any of {', '.join(PROFILES)} (default: all)")
    check.add_argument("--json", action="store_true", help="print one JSON object per profile instead")
    check.add_argument("--seconds", type=float, default=1.5, help="length of each throughput transfer")
    check.add_argument("--logs", type=Path, default=None, help="keep the helpers' logs here")
    _add_link_options(check)

    run = sub.add_parser("run", help="bring a link up, run a command in the edge namespace, tear it down",
                         description="Runs COMMAND in the edge namespace, with TESTBED_CLOUD_IP and friends in its "
                                     "environment. Start cloud-side servers with `ip netns exec $TESTBED_CLOUD_NS`. "
                                     "Without netem, only --expose'd ports carry the delay (through the proxy).")
    run.add_argument("profile", metavar="PROFILE", help=f"one of {', '.join(PROFILES)}")
    run.add_argument("--expose", type=int, action="append", default=[], metavar="PORT",
                     help="with the delay proxy: reach cloud-ns 127.0.0.1:PORT+10000 at $TESTBED_CLOUD_IP:PORT")
    run.add_argument("--logs", type=Path, default=None, help="keep the helpers' logs here")
    _add_link_options(run)
    run.add_argument("cmd", nargs="*", metavar="-- COMMAND", help="what to run, after a `--`")


    cleanup = sub.add_parser("cleanup", help="delete testbed namespaces left by a run that was killed -9")
    who = cleanup.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", help="the run's tag")
    who.add_argument("--all", action="store_true", help=f"every namespace named {NS_PREFIX}*")
    return parser


def _check(args: argparse.Namespace) -> int:
    from testbed.check import check_link

    ok = True
    for name in args.profiles:
        profile = get_profile(name)
        with tempfile.TemporaryDirectory(prefix="testbed-") as tmp:
            result = check_link(profile, log_dir=args.logs or Path(tmp), tag=args.name, delay=args.delay,
                                seconds=args.seconds)
        ok &= result.ok
        print(json.dumps(result.to_dict()) if args.json else result.table() + "\n", flush=True)
    return 0 if ok else 1


def _run(args: argparse.Namespace) -> int:
    from testbed.bed import testbed

    cmd = args.cmd
    if not cmd:
        raise ValueError("run needs a command after --, e.g. `run wifi -- bash`")
    with tempfile.TemporaryDirectory(prefix="testbed-") as tmp, \
            testbed(get_profile(args.profile), log_dir=args.logs or Path(tmp), tag=args.name,
                    delay=args.delay) as bed:
        print(f"testbed {bed.link.names.tag}: {bed.link.names.edge_ns} ({bed.link.edge_ip}) <-> "
              f"{bed.link.names.cloud_ns} ({bed.link.cloud_ip}); {bed.delay_label}", file=sys.stderr, flush=True)
        for port in args.expose:
            host, inner = bed.serve_across(port)
            print(f"  {bed.link.cloud_ip}:{port}: listen on {host}:{inner} in {bed.link.names.cloud_ns}",
                  file=sys.stderr, flush=True)
        return bed.run_in_edge(cmd)


def _cleanup(args: argparse.Namespace) -> int:
    from testbed.netns import LinkNames, delete_namespaces, list_namespaces, require_privileges

    require_privileges()
    if args.all:
        doomed = [ns for ns in list_namespaces() if ns.startswith(NS_PREFIX)]
    else:
        names = LinkNames.for_tag(args.name)
        doomed = [ns for ns in list_namespaces() if ns in (names.edge_ns, names.cloud_ns)]
    delete_namespaces(doomed)
    print(f"deleted {', '.join(doomed) or 'nothing'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is run's command, whatever options it has.
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if command:
        if args.command != "run":
            raise SystemExit(f"testbed: only run takes a command after --, not {args.command}")
        args.cmd = [*args.cmd, *command]
    handlers = {"check": _check, "run": _run, "cleanup": _cleanup}
    try:
        return handlers[args.command](args)
    except (TestbedError, ValueError, TimeoutError, FileNotFoundError) as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 2
