#!/usr/bin/env bash
# Prepares a machine for the test suite and the demo; safe to run again.
#  - system packages the Python dependencies need (MariaDB client headers for mysqlclient,
#    OpenSSL headers and a C compiler for the optional accelerator, clang and valgrind for
#    its proof, scripts/c_proof.sh),
#    installed with apt-get when missing and we are root;
#  - the local PostgreSQL and MariaDB servers, started when installed but not running;
#  - headless Chromium for the admin's browser tests (scripts/install-browser.sh);
#  - one virtual environment per tested combination of Python and Django (scripts/matrix.sh,
#    the same matrix as tox.ini), each with the package (editable, its C accelerator built
#    for that interpreter) and its test extras: .venv is the main combination (the newest
#    Django on the newest Python, with the lint extras too), .venv-pyXY-djangoAB the others.
#
#   ASHERAH_MATRIX  default: every combination; "main" for .venv only (e.g. the demo)
# A missing interpreter is an error naming it and how to install it, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/matrix.sh

need_apt=()
if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  need_apt+=(libmariadb-dev pkg-config)
fi
if [ ! -f /usr/include/openssl/evp.h ]; then
  need_apt+=(libssl-dev)  # the optional C accelerator (asherah_django.core._speedups)
fi
if ! command -v cc >/dev/null && ! command -v gcc >/dev/null; then
  need_apt+=(gcc)
fi
# The accelerator's proof (scripts/c_proof.sh): clang for the fuzz build, valgrind.
command -v clang >/dev/null || need_apt+=(clang)
command -v valgrind >/dev/null || need_apt+=(valgrind)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install ${need_apt[*]} (to build mysqlclient and the accelerator)" >&2
  fi
fi

if [ "${ASHERAH_START_SERVICES:-1}" = 1 ]; then
  if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "bootstrap: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if [ -x /usr/sbin/mariadbd ] && ! mysqladmin -h 127.0.0.1 -u root status >/dev/null 2>&1; then
    echo "bootstrap: starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
fi

# Headless Chromium for the admin's browser tests (Debian packages chromium, chromium-driver).
if [ -x scripts/install-browser.sh ] && [ "${ASHERAH_INSTALL_BROWSER:-1}" = 1 ]; then
  scripts/install-browser.sh
fi

# Every interpreter first, so that all the missing ones are named at once.
missing=0
for version in $(for combo in $(matrix_combos); do combo_python "$combo"; done | sort -u); do
  python_of "$version" >/dev/null || missing=1
done
[ $missing = 0 ] || exit 1

# The stamp changes with what the install depends on, and with the combination. The
# environments are made side by side (mostly downloads and unpacking); a failure shows its log.
inputs=$(cat pyproject.toml setup.py asherah_django/core/_speedups.c | sha256sum | cut -c1-16)
make_venv() {  # make_venv COMBO VENV STAMP
  local combo=$1 venv=$2 stamp=$3 python django extras=test,docs,release
  python=$(python_of "$(combo_python "$combo")")
  django=$(combo_django "$combo")
  [ "$venv" = .venv ] && extras=test,docs,release,lint,cproof
  "$python" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[$extras]" "django~=$django.0"
  touch "$stamp"
}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for combo in $(matrix_combos); do
  venv=$(combo_venv "$combo")
  stamp="$venv/.installed-$combo-$inputs"
  [ -f "$stamp" ] && continue
  echo "bootstrap: creating $venv (Python $(combo_python "$combo"), Django $(combo_django "$combo"))"
  make_venv "$combo" "$venv" "$stamp" >"$logs/$combo" 2>&1 &
  pids+=("$!:$combo")
done
failed=0
for entry in ${pids[@]+"${pids[@]}"}; do
  if ! wait "${entry%%:*}"; then
    grep -v "^WARNING: Location" "$logs/${entry#*:}" >&2 || true
    echo "bootstrap: could not create the environment of ${entry#*:} (log above)" >&2
    failed=1
  fi
done
exit $failed
