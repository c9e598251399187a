#!/usr/bin/env bash
# End-to-end compatibility suites against a corral binary.
#   tests/sdk/run.sh [pytest args...]     (args go to the modern suite)
# Uses $CORRAL_BIN or target/debug/corral; builds nothing. Venvs are kept in
# tests/sdk/.venv (gitpod-sdk 1.2.0) and tests/sdk/.venv-legacy (gitpod-sdk 0.11.0).
# CORRAL_TEST_DATABASE=postgres runs every server on a PostgreSQL database of
# its own (see corral_harness.py); the default is SQLite.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
export CORRAL_BIN="${CORRAL_BIN:-$REPO/target/debug/corral}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

if [ ! -x "$CORRAL_BIN" ]; then
  echo "run.sh: corral binary not found at $CORRAL_BIN (cargo build, or set CORRAL_BIN)" >&2
  exit 2
fi

venv() { # venv DIR REQUIREMENTS
  local dir="$1" req="$2" stamp="$1/.requirements"
  if [ ! -x "$dir/bin/python" ]; then
    "$PYTHON" -m venv "$dir"
  fi
  if ! cmp -s "$req" "$stamp"; then
    "$dir/bin/pip" install -q -r "$req"
    cp "$req" "$stamp"
  fi
}

venv "$HERE/.venv" "$HERE/requirements.txt"
venv "$HERE/.venv-legacy" "$HERE/requirements-legacy.txt"

REPORTS="$(mktemp -d)"
trap 'rm -rf "$REPORTS"' EXIT

status=0
echo "== store: ${CORRAL_TEST_DATABASE:-sqlite}"
echo "== modern suite (gitpod-sdk 1.2.0: Connect, gRPC, plain HTTP)"
(cd "$HERE" && .venv/bin/python -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" \
   --junitxml "$REPORTS/modern.xml" "$@") || status=$?

echo "== legacy suite (gitpod-sdk 0.11.0: JSON)"
(cd "$HERE/legacy" && ../.venv-legacy/bin/python -m pytest -c "$HERE/legacy/pytest.ini" --rootdir "$HERE/legacy" \
   --confcutdir "$HERE/legacy" --junitxml "$REPORTS/legacy.xml") || { s=$?; [ "$status" -eq 0 ] && status=$s; }

# One closing line for both suites together.
"$PYTHON" - "$REPORTS"/*.xml <<'PY' || true
import sys, xml.etree.ElementTree as ET
t = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except Exception:
        continue
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for k in t:
            t[k] += int(suite.get(k, 0))
failed = t["failures"] + t["errors"]
passed = t["tests"] - failed - t["skipped"]
print(f"total: {passed} passed, {failed} failed, {t['skipped']} skipped")
PY
exit "$status"
