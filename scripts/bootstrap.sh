#!/usr/bin/env bash
# Prepares a machine for the test suite and the demo; safe to run again.
#  - system packages the Python dependencies need (MariaDB client headers for mysqlclient,
#    OpenSSL headers and a C compiler for the optional accelerator),
#    installed with apt-get when missing and we are root;
#  - the local PostgreSQL and MariaDB servers, started when installed but not running;
#  - headless Chromium for the admin's browser tests (scripts/install-browser.sh);
#  - the virtual environment .venv with the package and its test and lint extras.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

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

stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[test,lint]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
