# Shared by scripts/serve, scripts/test and scripts/bench: make .venv if absent, install minipacs.
# Sourced, not run. Sets REPO and PY.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="$REPO/.venv/bin/python"
EXTRAS="${MINIPACS_EXTRAS:-}"
if [ ! -x "$PY" ]; then
  echo "minipacs: creating .venv" >&2
  python3 -m venv "$REPO/.venv"
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
fi
stamp="$REPO/.venv/.installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "minipacs: installing into .venv${EXTRAS:+ (with $EXTRAS extras)}" >&2
  "$PY" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$PY" -c "import pacs, pynetdicom, pydicom, peewee" || { echo "minipacs: install failed" >&2; exit 1; }
  touch "$stamp"
fi

# Install Debian packages when their binaries are missing and we can (root with apt-get).
ensure_debian_package() {  # ensure_debian_package PACKAGE PROBE_PATH...
  local package="$1"; shift
  local probe
  for probe in "$@"; do
    if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then return 0; fi
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "minipacs: installing Debian package $package" >&2
    if [ ! -f /tmp/.minipacs-apt-updated ]; then
      apt-get update -qq >/dev/null 2>&1 || true
      touch /tmp/.minipacs-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
      || echo "minipacs: could not install $package" >&2
  else
    echo "minipacs: $package is missing and cannot be installed here (not root)" >&2
  fi
}
