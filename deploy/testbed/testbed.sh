#!/usr/bin/env bash
# The link testbed: edge and cloud in two network namespaces joined by a shaped veth pair.
# A thin wrapper around `python -m testbed`; see deploy/testbed/README.md.
#   sudo deploy/testbed/testbed.sh check wifi lte      # measured RTT/goodput against each profile
#   sudo deploy/testbed/testbed.sh run wifi -- bash    # a shell in the edge namespace
#   sudo .venv/bin/edgecloud eval --link wifi --bundle artifacts/mnist --out artifacts/testbed/wifi
# Needs root (namespaces, veth, tc); the namespaces are deleted however the run ends.
set -euo pipefail

# check, run and cleanup make namespaces: say so before anything else when not root (Python then also
# checks the capabilities, for root in a container without CAP_NET_ADMIN/CAP_SYS_ADMIN).
case "${1:-}" in
    check | run | cleanup)
        if [[ "$(id -u)" != 0 ]]; then
            echo "testbed: the link testbed needs root: it creates network namespaces, a veth pair and tc" \
                 "qdiscs, and this runs as uid $(id -u). Run it with sudo, e.g. \`sudo $0 check wifi\`." >&2
            exit 2
        fi
        ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${EDGECLOUD_PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "testbed: no Python at $python; run \`make test\` (creates .venv) or set EDGECLOUD_PYTHON" >&2
    exit 2
fi
# The table is the evaluation's, not the testbed's: it reads `edgecloud eval --link` reports.
if [[ "${1:-}" == table ]]; then
    shift
    exec "$python" -m edgecloud.evaluation.results "$@"
fi
exec "$python" -m testbed "$@"
