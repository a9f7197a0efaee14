#!/usr/bin/env bash
# Install the edgecloud edge agent on a Raspberry Pi 4 (or any Linux box with --allow-any-arch).
# Run `install.sh --help` for the options; deploy/README.md walks through a whole deployment.
set -euo pipefail

readonly PROG="${0##*/}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly DEPLOY_DIR="${SCRIPT_DIR%/*}"
readonly MIN_PYTHON_MAJOR=3 MIN_PYTHON_MINOR=11
# Refused from 3.14 on: its standard library has a package named `compression` (PEP 784) that collides with
# edgecloud's own (edgecloud/__init__.py explains). pip refuses it too (requires-python); this says why first.
readonly BELOW_PYTHON_MINOR=14
readonly SUPPORTED_PYTHON=">=${MIN_PYTHON_MAJOR}.${MIN_PYTHON_MINOR},<${MIN_PYTHON_MAJOR}.${BELOW_PYTHON_MINOR}"
# A Pi 4 runs a 64-bit (aarch64) or 32-bit (armv7l) OS.
readonly PI_ARCHES="aarch64 armv7l"
readonly SERVICE_USER=edgecloud

usage() {
    cat <<EOF
Usage: $PROG [OPTIONS]

Install the edgecloud edge agent as a systemd service:
  /opt/edgecloud/venv                        a virtualenv with edgecloud[edge] only: onnxruntime, no torch
  /etc/systemd/system/edgecloud-edge.service the unit (always replaced by this version)
  /etc/edgecloud/edge.env                    its settings, from edge.env.example (never overwritten)
  /var/lib/edgecloud/bundle                  the bundle the agent serves (read-only to the service)
  user and group '$SERVICE_USER'                 created when missing
Running it again is safe: it upgrades the package and keeps your settings and bundle.

Options:
  --source PATH|SPEC      what to pip-install: an edgecloud source tree or a wheel/sdist (a path, with
                          a slash: ./edgecloud-src), or a requirement such as 'edgecloud==0.1.0'.
                          The [edge] extra is added either way.
                          Default: the checkout this script lives in ($(cd "$DEPLOY_DIR/.." && pwd)).
  --python PATH           Python $SUPPORTED_PYTHON to build the venv with (default: python3).
  --bundle DIR            copy this bundle (a directory with manifest.json) to /var/lib/edgecloud/bundle.
  --root DIR, --prefix DIR
                          install everything under DIR instead of / (staging or testing): no user is
                          created, nothing is chown'ed, systemctl is not called, root is not required.
  --allow-any-arch        do not insist on a Raspberry Pi architecture ($PI_ARCHES);
                          same as EDGECLOUD_ALLOW_ANY_ARCH=1.
  --dry-run               check the Python and the architecture, print what would be done, change nothing.
  -h, --help              show this help.

pip reads its usual PIP_* variables (PIP_INDEX_URL, PIP_FIND_LINKS, ...), e.g. for piwheels.

After installing:
  1. copy your bundle to /var/lib/edgecloud/bundle (or pass --bundle),
  2. put the cloud's token in /etc/edgecloud/cloud_token (root-only, mode 0600),
  3. set EDGECLOUD_CLOUD_URL in /etc/edgecloud/edge.env,
  4. sudo systemctl enable --now edgecloud-edge
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage_error() { log "error: $*"; log "try '$PROG --help'"; exit 2; }

# Print a command; run it unless --dry-run.
run() {
    printf '+ %s\n' "$*" >&2
    if [[ "$DRY_RUN" == 0 ]]; then
        "$@"
    fi
}

SOURCE=""
PYTHON=python3
BUNDLE_SRC=""
ROOT=""
ALLOW_ANY_ARCH="${EDGECLOUD_ALLOW_ANY_ARCH:-0}"
DRY_RUN=0

while (($#)); do
    case "$1" in
        --source | --python | --bundle | --root | --prefix)
            (($# >= 2)) || usage_error "$1 needs a value"
            case "$1" in
                --source) SOURCE="$2" ;;
                --python) PYTHON="$2" ;;
                --bundle) BUNDLE_SRC="$2" ;;
                --root | --prefix) ROOT="$2" ;;
            esac
            shift 2
            ;;
        --source=* | --python=* | --bundle=* | --root=* | --prefix=*)
            value="${1#*=}"
            case "$1" in
                --source=*) SOURCE="$value" ;;
                --python=*) PYTHON="$value" ;;
                --bundle=*) BUNDLE_SRC="$value" ;;
                --root=* | --prefix=*) ROOT="$value" ;;
            esac
            shift
            ;;
        --allow-any-arch) ALLOW_ANY_ARCH=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done

# --- checks: fail before touching anything ------------------------------------------------------------

check_arch() {
    # EDGECLOUD_ARCH stands in for `uname -m` so the refusal itself can be tested on any machine.
    local arch="${EDGECLOUD_ARCH:-$(uname -m)}"
    if [[ "$ALLOW_ANY_ARCH" == 1 ]]; then
        log "architecture $arch (not checked: --allow-any-arch)"
        return
    fi
    case " $PI_ARCHES " in
        *" $arch "*) ;;
        *) die "architecture '$arch' is not a Raspberry Pi's ($PI_ARCHES); pass --allow-any-arch" \
               "(or set EDGECLOUD_ALLOW_ANY_ARCH=1) to install on this machine anyway" ;;
    esac
    if [[ "$arch" == armv7l ]]; then
        # PyPI has no onnxruntime wheel for 32-bit ARM; piwheels or a self-built wheel must supply it.
        log "warning: 32-bit OS (armv7l): onnxruntime needs a wheel from PIP_EXTRA_INDEX_URL or" \
            "PIP_FIND_LINKS; a 64-bit Raspberry Pi OS (aarch64) installs from PyPI"
    fi
}

check_python() {
    local version major minor
    command -v "$PYTHON" >/dev/null 2>&1 || die "Python '$PYTHON' not found; pass --python PATH to a" \
        "Python $SUPPORTED_PYTHON (on Raspberry Pi OS: sudo apt-get install python3 python3-venv)"
    version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
        || die "'$PYTHON' does not run as a Python interpreter"
    if [[ ! "$version" =~ ^([0-9]+)\.([0-9]+)$ ]]; then
        die "'$PYTHON' reported version '$version', expected MAJOR.MINOR"
    fi
    major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
    if ((major > MIN_PYTHON_MAJOR || (major == MIN_PYTHON_MAJOR && minor >= BELOW_PYTHON_MINOR))); then
        die "'$PYTHON' is Python $version; edgecloud needs Python $SUPPORTED_PYTHON: from" \
            "${MIN_PYTHON_MAJOR}.${BELOW_PYTHON_MINOR} on, the standard library has a package named 'compression'" \
            "(PEP 784) that collides with edgecloud's own. Pass --python PATH to a Python 3.11 to 3.13"
    fi
    if ((major != MIN_PYTHON_MAJOR || minor < MIN_PYTHON_MINOR)); then
        die "'$PYTHON' is Python $version; edgecloud needs Python $SUPPORTED_PYTHON" \
            "(Raspberry Pi OS bookworm ships 3.11; pass --python PATH to choose another)"
    fi
    # Debian splits venv/ensurepip into python3-venv; without it `python -m venv` fails half-way.
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 \
        || die "'$PYTHON' has no venv/ensurepip module: sudo apt-get install python3-venv"
    log "Python $version at $(command -v "$PYTHON")"
}

# The pip requirement for SOURCE, always with the [edge] extra and never [train] or [cloud].
resolve_requirement() {
    local source="$SOURCE"
    if [[ -z "$source" ]]; then
        source="$(cd "$DEPLOY_DIR/.." && pwd)"
        [[ -f "$source/pyproject.toml" ]] || die "no --source given and $source is not an edgecloud" \
            "checkout; pass --source DIR|WHEEL|SPEC"
    fi
    # Like pip: a path has a slash or a leading dot (./src), or names an archive; anything else is a
    # requirement, even when a directory of that name happens to be in the current directory.
    if [[ "$source" == */* || "$source" == .* || "$source" =~ \.(whl|tar\.gz|zip)$ ]]; then
        if [[ -d "$source" ]]; then
            [[ -f "$source/pyproject.toml" ]] || die "--source $source has no pyproject.toml"
            REQUIREMENT="$(cd "$source" && pwd)[edge]"
        elif [[ -f "$source" && "$source" =~ \.(whl|tar\.gz|zip)$ ]]; then
            REQUIREMENT="$(cd "$(dirname "$source")" && pwd)/${source##*/}[edge]"
        elif [[ -f "$source" ]]; then
            die "--source $source is a file but not a wheel or sdist (.whl, .tar.gz, .zip)"
        else
            die "--source $source does not exist"
        fi
    elif [[ "$source" =~ ^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^]]*\])?(.*)$ ]]; then
        [[ -z "${BASH_REMATCH[2]}" ]] || die "--source $source: leave out the extras, [edge] is added"
        REQUIREMENT="${BASH_REMATCH[1]}[edge]${BASH_REMATCH[3]}"
    else
        die "--source '$source' is neither a directory, a wheel/sdist nor a pip requirement"
    fi
}

check_arch
check_python
resolve_requirement

if [[ -n "$BUNDLE_SRC" && ! -f "$BUNDLE_SRC/manifest.json" ]]; then
    die "--bundle $BUNDLE_SRC has no manifest.json; pass the bundle directory that 'edgecloud build' wrote"
fi

if [[ -n "$ROOT" ]]; then
    [[ "$DRY_RUN" == 1 || -d "$ROOT" ]] || die "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" 2>/dev/null && pwd || printf '%s' "${ROOT%/}")"
    log "installing under $ROOT (no user, no chown, no systemctl)"
elif [[ "$DRY_RUN" == 0 && "$EUID" -ne 0 ]]; then
    die "installing to / needs root: run it with sudo (or pass --root DIR to stage it elsewhere)"
fi

readonly VENV="$ROOT/opt/edgecloud/venv"
readonly ETC_DIR="$ROOT/etc/edgecloud"
readonly UNIT_DIR="$ROOT/etc/systemd/system"
readonly BUNDLE_DIR="$ROOT/var/lib/edgecloud/bundle"

# --- the install: every step may run again --------------------------------------------------------

if [[ -z "$ROOT" ]]; then
    if getent passwd "$SERVICE_USER" >/dev/null; then
        log "user $SERVICE_USER exists"
    else
        run useradd --system --user-group --home-dir /var/lib/edgecloud --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
fi

if [[ -x "$VENV/bin/python" ]]; then
    log "reusing the venv $VENV"
else
    run "$PYTHON" -m venv "$VENV"
fi
# --upgrade: a second run with a newer source or version replaces the installed one.
run "$VENV/bin/python" -m pip install --upgrade "$REQUIREMENT"

if [[ "$DRY_RUN" == 0 ]]; then
    # The whole point of the edge extra: a Pi cannot afford torch (docs/architecture.md).
    if "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'
    then
        die "torch is installed in $VENV; the edge venv must hold only edgecloud[edge]"
    fi
    "$VENV/bin/python" -c 'import onnxruntime, shared, edge_agent' \
        || die "the venv $VENV cannot import onnxruntime, shared and edge_agent"
fi

run install -d -m 0755 "$ETC_DIR" "$UNIT_DIR" "$BUNDLE_DIR"
run install -m 0644 "$DEPLOY_DIR/systemd/edgecloud-edge.service" "$UNIT_DIR/edgecloud-edge.service"
# The example is refreshed every time; edge.env is the user's and is only ever created.
run install -m 0644 "$DEPLOY_DIR/systemd/edge.env.example" "$ETC_DIR/edge.env.example"
if [[ -e "$ETC_DIR/edge.env" ]]; then
    log "keeping $ETC_DIR/edge.env"
else
    run install -m 0600 "$DEPLOY_DIR/systemd/edge.env.example" "$ETC_DIR/edge.env"
fi

if [[ -n "$BUNDLE_SRC" ]]; then
    # Copy into place first, then swap, so the agent never sees half a bundle.
    run rm -rf "$BUNDLE_DIR.new"
    run cp -R "$BUNDLE_SRC" "$BUNDLE_DIR.new"
    run chmod -R u=rwX,go=rX "$BUNDLE_DIR.new"
    run rm -rf "$BUNDLE_DIR"
    run mv "$BUNDLE_DIR.new" "$BUNDLE_DIR"
fi

if [[ -z "$ROOT" ]]; then
    run systemctl daemon-reload
fi

if [[ "$DRY_RUN" == 1 ]]; then
    log "dry run: nothing was changed"
    exit 0
fi

log "installed the edge agent in $VENV"
[[ -f "$BUNDLE_DIR/manifest.json" ]] || log "next: copy your bundle to $BUNDLE_DIR (or pass --bundle DIR)"
[[ -f "$ETC_DIR/cloud_token" ]] || log "next: put the cloud's token in $ETC_DIR/cloud_token (mode 0600)"
log "next: set EDGECLOUD_CLOUD_URL in $ETC_DIR/edge.env, then: sudo systemctl enable --now edgecloud-edge"
