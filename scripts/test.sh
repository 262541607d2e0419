#!/usr/bin/env bash
# The whole test suite: everything on SQLite, then every test that uses the database
# again on PostgreSQL and on MariaDB, then lint and types (ruff, mypy). Real servers
# only: OpenBao is started by the tests themselves; the databases by bootstrap.sh.
#
#   ASHERAH_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test
#   ASHERAH_TEST_MYSQL_URL     default mysql://root@127.0.0.1:3306/test
#   ASHERAH_TEST_DATABASES     default "sqlite postgres mysql"; narrowing it is reported
#   extra arguments are passed to every pytest run (e.g. -x, -k name)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY=.venv/bin/python
export PYTHONDEVMODE=1 PYTHONHASHSEED=0 TZ=UTC
# The C accelerator must have been built here (bootstrap installs its build dependencies);
# its tests fail rather than skip without it. The pure-Python path is tested as well.
export ASHERAH_DJANGO_REQUIRE_SPEEDUPS=${ASHERAH_DJANGO_REQUIRE_SPEEDUPS:-1}

databases=${ASHERAH_TEST_DATABASES:-sqlite postgres mysql}
pg_url=${ASHERAH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
my_url=${ASHERAH_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
if [ "$databases" != "sqlite postgres mysql" ]; then
  echo "NOTE: ASHERAH_TEST_DATABASES=\"$databases\": the other databases are NOT tested" >&2
fi

status=0
run() {
  local name=$1; shift
  echo "== pytest on $name"
  set +e
  "$PY" -m pytest "$@"
  local rc=$?
  set -e
  [ $rc -eq 0 ] || status=$rc
}

for db in $databases; do
  case $db in
    sqlite) run SQLite --cov --cov-report=term:skip-covered "$@" ;;
    postgres) DATABASE_URL=$pg_url run PostgreSQL -m database "$@" ;;
    mysql) DATABASE_URL=$my_url run MariaDB -m database "$@" ;;
    *) echo "unknown database '$db' in ASHERAH_TEST_DATABASES" >&2; exit 2 ;;
  esac
done
echo "== lint: ruff and mypy"
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
{ echo "== mutation testing: scripts/mutate.sh (mutation.toml)"; scripts/mutate.sh; } || status=1
exit $status
