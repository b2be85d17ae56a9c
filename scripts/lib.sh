# Shared by the scripts: find the repository and make sure the local AWS endpoint (moto) is installed.
# shellcheck shell=bash
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT
# moto's server, pinned: the version whose behaviour the tests were written against (docs/aws-facts.md, "Local tools the tests use").
MOTO_VERSION=5.2.1
VENV="$REPO_ROOT/.venv"

log() { printf '==> %s\n' "$*" >&2; }

# Creates .venv with moto[server]==$MOTO_VERSION unless it is already there.
ensure_moto() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  log "installing moto[server]==$MOTO_VERSION into .venv (first run only)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# libfaketime (Debian's `faketime`): tests/tests/clock_skew.rs runs `dr` with its clock skewed through it. Installed
# with apt-get when missing and this runs as root; otherwise says so (those tests then fail, saying what is missing).
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
ensure_faketime() {
  if [ -e "$FAKETIME_LIB" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing faketime (libfaketime) with apt-get (first run only)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; }; then
      log "warning: apt-get could not install faketime; tests/tests/clock_skew.rs will say it cannot run"
    fi
  else
    log "warning: $FAKETIME_LIB is missing and cannot be installed here (not root, or no apt-get): apt-get install faketime"
  fi
}

# The tests and the demo start moto through this (one server per process, on a free port).
export DR_MOTO_PYTHON="$VENV/bin/python"
export DR_MOTO_SCRIPT="$REPO_ROOT/scripts/moto_server.py"

# Pinned tools, one virtualenv each under .venv-tools/ (their pins conflict). SAM CLI is shared by
# scripts/build-lambda (sam build) and scripts/lint-template (samconfig.toml through SAM CLI's own parser).
TOOLS="$REPO_ROOT/.venv-tools"
SAM_CLI_VERSION=1.170.0

# ensure_venv NAME PACKAGE==VERSION...: .venv-tools/NAME with exactly these pins (reinstalled when they change).
ensure_venv() {
  local name=$1; shift
  local venv="$TOOLS/$name" wanted="$*"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$wanted" ]; then
    return 0
  fi
  log "installing $wanted into .venv-tools/$name (first run only)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  printf '%s' "$wanted" > "$venv/.pins"
}
