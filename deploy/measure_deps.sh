#!/usr/bin/env bash
# Installed size of the cloud image's two dependency sets, measured in fresh venvs (no Docker needed).
# Run `measure_deps.sh --help` for the options; docs/results.md ("Cloud image dependencies") has a run.
set -euo pipefail

readonly PROG="${0##*/}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly REPO_ROOT

usage() {
    cat <<USAGE
Usage: $PROG [OPTIONS]

Create two fresh virtualenvs and install into each what the cloud image (Dockerfile) installs:
  cloud        edgecloud[cloud]                         the default image (WITH_TORCH=false)
  cloud+torch  torch==VERSION, then edgecloud[cloud]    the image built with WITH_TORCH=true
Then print, for each, the bytes under its site-packages (du -sb), the number of installed
distributions (pip list, pip itself included) and the install time. The package is installed from
this checkout ($REPO_ROOT), not editable, as in the image.

Options:
  --python PATH          the Python to create the venvs with (default: python3; the image has 3.11).
  --torch-version V      torch version for the cloud+torch set (default: 2.13.0, as the Makefile and
                         the Dockerfile pin; pip's usual PIP_* settings decide which wheel, e.g. CPU).
  --work-dir DIR         where to create the venvs (default: a temporary directory, removed at exit).
                         DIR/cloud and DIR/cloud+torch must not exist yet.
  --keep                 keep the venvs (with the default --work-dir).
  -h, --help             show this help.
USAGE
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage_error() { log "error: $*"; log "try '$PROG --help'"; exit 2; }

PYTHON=python3
TORCH_VERSION=2.13.0
WORK_DIR=""
KEEP=0
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --python | --torch-version | --work-dir)
            (($# >= 2)) || usage_error "$1 needs a value"
            case "$1" in
                --python) PYTHON="$2" ;;
                --torch-version) TORCH_VERSION="$2" ;;
                --work-dir) WORK_DIR="$2" ;;
            esac
            shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done

command -v "$PYTHON" >/dev/null 2>&1 || die "Python '$PYTHON' not found; pass --python PATH"
if [[ -z "$WORK_DIR" ]]; then
    WORK_DIR="$(mktemp -d -t edgecloud-deps.XXXXXX)"
    if ((KEEP)); then
        log "venvs are kept in $WORK_DIR"
    else
        trap 'rm -rf "$WORK_DIR"' EXIT
    fi
fi
mkdir -p "$WORK_DIR"

# make_venv NAME TORCH_VERSION_OR_EMPTY: create WORK_DIR/NAME and install the set; prints its row.
make_venv() {
    local name="$1" torch="$2" venv="$WORK_DIR/$1" start site bytes count seconds
    [[ ! -e "$venv" ]] || die "$venv already exists; pass another --work-dir"
    start="$(date +%s)"
    log "$name: creating $venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    if [[ -n "$torch" ]]; then
        log "$name: torch==$torch"
        "$venv/bin/python" -m pip install --quiet "torch==$torch"
    fi
    log "$name: edgecloud[cloud]"
    "$venv/bin/python" -m pip install --quiet "${REPO_ROOT}[cloud]"
    seconds=$(($(date +%s) - start))
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
    bytes="$(du -sb "$site" | cut -f1)"
    count="$("$venv/bin/python" -m pip list --format=freeze | wc -l)"
    printf '| %s | %s | %d | %s | %d |\n' "$name" "$bytes" "$((bytes / 1048576))" "$count" "$seconds"
}

printf '| set | site-packages bytes | MiB | distributions | install s |\n'
printf '|---|---:|---:|---:|---:|\n'
make_venv cloud ""
make_venv "cloud+torch" "$TORCH_VERSION"
