#!/usr/bin/env bash
# The whole test suite, on every tested combination of Python and Django (scripts/matrix.sh,
# the same matrix as tox.ini): on the main one (the newest Django on the newest Python,
# .venv) everything on SQLite, then every test that uses the database again on PostgreSQL
# and on MariaDB, then lint and types (ruff, mypy); on each other combination the whole
# SQLite suite (but the release artifacts' test, tests/integration/release, which runs once, on the main
# combination); then the documentation site is built with warnings as errors, and the C
# accelerator's bounded proof runs (scripts/c_proof.sh quick: ASan/UBSan, valgrind, atheris). Real servers
# only: OpenBao is started by the tests themselves; the
# databases by bootstrap.sh. A combination whose Python is missing fails the run.
#
# The other combinations run one at a time beside the main one (the suite mostly waits on
# servers, so two runs share the two cores well); their output follows the main one's.
#
#   ASHERAH_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test
#   ASHERAH_TEST_MYSQL_URL     default mysql://root@127.0.0.1:3306/test
#   ASHERAH_TEST_DATABASES     default "sqlite postgres mysql"; narrowing it is reported
#   ASHERAH_MATRIX             default every combination; narrowing it is reported
#   ASHERAH_TEST_SERIAL=1      run the combinations one after another
#   extra arguments are passed to every pytest run (e.g. -x, -k name)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
. scripts/matrix.sh
export PYTHONDEVMODE=1 PYTHONHASHSEED=0 TZ=UTC
# The C accelerator must have been built here (bootstrap installs its build dependencies);
# its tests fail rather than skip without it. The pure-Python path is tested as well.
export ASHERAH_DJANGO_REQUIRE_SPEEDUPS=${ASHERAH_DJANGO_REQUIRE_SPEEDUPS:-1}

combos=$(matrix_combos)
combos=$(echo $combos)  # one line: "a b c"
databases=${ASHERAH_TEST_DATABASES:-sqlite postgres mysql}
pg_url=${ASHERAH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
my_url=${ASHERAH_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
if [ "$databases" != "sqlite postgres mysql" ]; then
  echo "NOTE: ASHERAH_TEST_DATABASES=\"$databases\": the other databases are NOT tested" >&2
fi
if [ "$combos" != "$MATRIX_ALL" ]; then
  echo "NOTE: ASHERAH_MATRIX=\"${ASHERAH_MATRIX:-}\": only $combos is tested" >&2
fi

started=$SECONDS
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() {  # run COMBO NAME pytest-arguments...: one pytest run, its result kept in $logs
  local combo=$1 name=$2; shift 2
  local py log begun rc
  py=$(combo_venv "$combo")/bin/python
  log="$logs/$combo-$name"
  begun=$SECONDS
  echo "== pytest on $name, $combo ($("$py" -c 'import django; print("Django", django.get_version())'))"
  set +e
  "$py" -m pytest "$@" 2>&1 | tee "$log.log"
  rc=${PIPESTATUS[0]}
  set -e
  printf '%-15s %-10s %5ss  exit %s %s\n' "$combo" "$name" $((SECONDS - begun)) "$rc" \
    "$(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$log.log" | tail -n1 | tr -d '=')" \
    >"$log.summary"
  return "$rc"
}

others=()
for combo in $combos; do
  [ "$combo" = "$MATRIX_MAIN" ] || others+=("$combo")
done
run_others() {
  local combo rc=0
  for combo in ${others[@]+"${others[@]}"}; do
    run "$combo" SQLite -m "not release" "$@" || rc=1
  done
  return $rc
}

status=0
if [ "${ASHERAH_TEST_SERIAL:-0}" = 1 ]; then
  run_others "$@" || status=1
else
  run_others "$@" >"$logs/others.out" 2>&1 &
  others_pid=$!
fi
case " $combos " in
  *" $MATRIX_MAIN "*)
    for db in $databases; do
      case $db in
        sqlite) run "$MATRIX_MAIN" SQLite --cov --cov-report=term:skip-covered "$@" || status=1 ;;
        postgres) DATABASE_URL=$pg_url run "$MATRIX_MAIN" PostgreSQL -m database "$@" || status=1 ;;
        mysql) DATABASE_URL=$my_url run "$MATRIX_MAIN" MariaDB -m database "$@" || status=1 ;;
        *) echo "unknown database '$db' in ASHERAH_TEST_DATABASES" >&2; exit 2 ;;
      esac
    done
    echo "== docs: sphinx -W --keep-going (docs/_build/html)"
    .venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html || status=1
    echo "== lint: ruff, mypy and the import contracts ($MATRIX_MAIN)"
    .venv/bin/ruff check . || status=1
    .venv/bin/ruff format --check . || status=1
    .venv/bin/mypy || status=1
    .venv/bin/lint-imports || status=1
    { echo "== mutation testing: scripts/mutate.sh (mutation.toml)"; scripts/mutate.sh; } || status=1
    # The C accelerator's proof (issue #21): ASan/UBSan, valgrind and a bounded fuzz run.
    echo "== C proof: scripts/c_proof.sh quick (ASan/UBSan, valgrind, atheris)"
    begun=$SECONDS
    set +e
    scripts/c_proof.sh quick 2>&1 | tee "$logs/cproof.log"
    cproof_rc=${PIPESTATUS[0]}
    set -e
    [ "$cproof_rc" = 0 ] || status=1
    printf '%-15s %-10s %5ss  exit %s %s\n' "$MATRIX_MAIN" "C-proof" $((SECONDS - begun)) "$cproof_rc" \
      "$(sed -nE 's/^c-proof fuzz: ([0-9]+) executions in ([0-9]+s).*, ([0-9]+) edges,.*/fuzz: \1 runs in \2, \3 edges/p' "$logs/cproof.log")" \
      >"$logs/$MATRIX_MAIN-zcproof.summary"
    ;;
esac
if [ -n "${others_pid:-}" ]; then
  wait "$others_pid" || status=1
  cat "$logs/others.out"
fi

echo "== summary: combination, database, seconds, pytest's result"
for combo in $combos; do
  if ! cat "$logs/$combo"-*.summary 2>/dev/null; then
    echo "$combo: did not run" && status=1  # never a silent skip
  fi
done
echo "total: $((SECONDS - started))s"
exit $status
