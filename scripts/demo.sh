#!/usr/bin/env bash
# The demo: the example project against a local OpenBao (Vault-compatible) server.
# Extra arguments go to example_project/demo.py (--check, --port N).
set -euo pipefail
cd "$(dirname "$0")/.."
ASHERAH_MATRIX=main ASHERAH_START_SERVICES=0 ASHERAH_INSTALL_BROWSER=0 scripts/bootstrap.sh
exec .venv/bin/python example_project/demo.py "$@"
