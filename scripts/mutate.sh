#!/usr/bin/env bash
# Mutation testing (scripts/mutate.py, configured in mutation.toml).
#
#   scripts/mutate.sh          the bounded CI run (called by scripts/test.sh): the mutants of
#                              issue #22's table, and a sample of the core's; it fails on a
#                              survivor not listed, with its reason, in mutation-allowlist.toml
#   scripts/mutate.sh full     every mutant of the configured modules (`make mutate`; long)
#   other arguments are passed to scripts/mutate.py (e.g. full --sample 100 --seed 7)
#
#   ASHERAH_SKIP_MUTATION=1    skip it (reported, never silent)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${ASHERAH_SKIP_MUTATION:-0}" = "1" ]; then
  echo "NOTE: ASHERAH_SKIP_MUTATION=1: mutation testing was NOT run" >&2
  exit 0
fi
PY=.venv/bin/python
[ -x "$PY" ] || scripts/bootstrap.sh
if [ $# -eq 0 ]; then
  set -- ci
fi
exec nice -n 5 "$PY" scripts/mutate.py "$@"
