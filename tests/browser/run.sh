#!/usr/bin/env bash
# The dashboard's browser suite against a corral binary.
#   tests/browser/run.sh [pytest args...]
# Uses $CORRAL_BIN or target/debug/corral; builds nothing. Drives Debian's
# Chromium ($CHROMIUM, default /usr/bin/chromium) with Playwright; never
# downloads a browser. The venv is kept in tests/browser/.venv.
# CORRAL_TEST_DATABASE=postgres runs the server on a PostgreSQL database of its
# own (see tests/sdk/corral_harness.py); the default is SQLite.
# Screenshots are written to target/screenshots/dashboard/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
export CORRAL_BIN="${CORRAL_BIN:-$REPO/target/debug/corral}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# Playwright must use the system Chromium, never fetch one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ ! -x "$CORRAL_BIN" ]; then
  echo "run.sh: corral binary not found at $CORRAL_BIN (cargo build, or set CORRAL_BIN)" >&2
  exit 2
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "run.sh: Chromium not found at $CHROMIUM (apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 2
fi

VENV="$HERE/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Both requirement files decide what is installed.
STAMP="$VENV/.requirements"
WANT="$(cat "$HERE/requirements.txt" "$HERE/../sdk/requirements.txt")"
if [ "$WANT" != "$(cat "$STAMP" 2>/dev/null)" ]; then
  "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
  printf '%s' "$WANT" > "$STAMP"
fi

mkdir -p "$REPO/target/screenshots/dashboard"
echo "== browser suite (store: ${CORRAL_TEST_DATABASE:-sqlite}; screenshots in target/screenshots/dashboard/)"
cd "$HERE"
exec "$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$@"
