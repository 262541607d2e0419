#!/usr/bin/env bash
# The C accelerator's proof beyond the differential tests (issue #21; docs/performance.md):
# asherah_django/core/_speedups.c is built three more times, each into a temporary copy of
# the package (the tree's own build is never touched), and run:
#   asan      gcc -fsanitize=address,undefined: tests/unit/core/test_speedups.py, the fuzz
#             seed corpus (tests/cproof/corpus/speedups) and the every-function driver
#             (tests/cproof/speedups_driver.py), with libasan/libubsan preloaded into CPython
#             and PYTHONMALLOC=malloc so that every Python object is its own allocation;
#   valgrind  gcc -O2 -g: the driver under memcheck (errors, and leaks made by our code);
#   fuzz      clang -fsanitize=fuzzer-no-link,address,undefined: atheris (libFuzzer) on the
#             differential targets of tests/cproof/speedups_targets.py, seeded by the corpus;
#             the run's size (executions, seconds, corpus, edges) is printed.
# Any sanitizer report, memcheck error, leak from our code, or disagreement fails the run.
#
#   scripts/c_proof.sh [quick]    bounded, for scripts/test.sh (fuzz 60 s)
#   scripts/c_proof.sh full       make c-proof (fuzz 600 s, the grown corpus replayed under
#                                 the gcc sanitizers too, the C edges each function reached,
#                                 and gcov's line coverage of _speedups.c: part "coverage")
#   scripts/c_proof.sh quick|full asan|valgrind|fuzz|coverage...   only those parts
#   CPROOF_FUZZ_SECONDS=N         the fuzz time; CPROOF_KEEP=DIR keeps the work folder there
#   ASHERAH_SKIP_CPROOF=1         skip it (reported, never silent)
# Needs gcc, clang, valgrind and libssl-dev (scripts/bootstrap.sh installs them) and atheris
# (the cproof extra, in .venv). Crashes and logs are copied to test-artifacts/cproof/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${ASHERAH_SKIP_CPROOF:-0}" = 1 ]; then
  echo "NOTE: ASHERAH_SKIP_CPROOF=1: the C proof (sanitizers, valgrind, fuzzing) was NOT run" >&2
  exit 0
fi
mode=${1:-quick}
case $mode in quick|full) shift || true ;; *) echo "usage: $0 [quick|full] [asan|valgrind|fuzz|coverage...]" >&2; exit 2 ;; esac
parts=${*:-asan valgrind fuzz $([ "$mode" = full ] && echo coverage || true)}
PY=${CPROOF_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || scripts/bootstrap.sh
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
root=$PWD
fuzz_seconds=${CPROOF_FUZZ_SECONDS:-$([ "$mode" = full ] && echo 600 || echo 60)}
work=${CPROOF_KEEP:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${CPROOF_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
artifacts=$root/test-artifacts/cproof
mkdir -p "$artifacts"
include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
source=asherah_django/core/_speedups.c
for tool in gcc clang valgrind; do
  command -v $tool >/dev/null || { echo "c_proof: $tool is missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done

build() {  # build NAME COMPILER FLAGS...: a copy of the package with this build; prints its root
  local name=$1 cc=$2 tree="$work/$1"; shift 2
  rm -rf "$tree" && mkdir -p "$tree"
  tar -c --exclude='*.so' --exclude=__pycache__ asherah_django tests pyproject.toml | tar -x -C "$tree"
  "$cc" -shared -fPIC -Wall -Wextra "$@" -I"$include" "$source" -lcrypto \
    -o "$tree/asherah_django/core/_speedups$suffix" >&2
  echo "$tree"
}

# Fails when a log holds a sanitizer report (in case a process swallowed its exit code).
no_reports() {  # no_reports LOG
  if grep -nE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: UndefinedBehaviorSanitizer' "$1" >&2; then
    echo "c_proof: sanitizer report in $1 (copied to $artifacts)" >&2
    cp "$1" "$artifacts/"
    return 1
  fi
}

sanitizer_env=(PYTHONMALLOC=malloc ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1 PYTHONHASHSEED=0 TZ=UTC
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1)

run_asan() {
  local tree log begun=$SECONDS
  tree=$(build asan gcc -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=all -g -O1)
  log=$work/asan.log
  # (CPython itself "leaks" at exit, so LeakSanitizer is off; valgrind checks our leaks.)
  local env_=("${sanitizer_env[@]}" "PYTHONPATH=$tree"
    "LD_PRELOAD=$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)")
  echo "== c-proof asan: gcc -fsanitize=address,undefined ($tree)"
  (
    cd "$tree"
    env -u PYTHONDEVMODE "${env_[@]}" "$PY" -c \
      'import asherah_django.core._speedups as s, sys; assert s.__file__.startswith(sys.argv[1]), s.__file__' "$tree"
    env -u PYTHONDEVMODE "${env_[@]}" nice "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
      tests/unit/core/test_speedups.py
    env -u PYTHONDEVMODE "${env_[@]}" nice "$PY" -m tests.cproof.fuzz_speedups replay \
      tests/cproof/corpus/speedups ${CPROOF_EXTRA_CORPUS:-}
    env -u PYTHONDEVMODE "${env_[@]}" nice "$PY" tests/cproof/speedups_driver.py \
      "$tree/asherah_django/core/_speedups$suffix" tests/cproof/corpus/speedups
    # The EVP route too (OpenSSL 1.1.1's, and the fallback when the provider's functions
    # are not found): the same driver with the provider's direct calls turned off.
    env -u PYTHONDEVMODE "${env_[@]}" ASHERAH_DJANGO_SPEEDUPS_EVP=1 nice "$PY" \
      tests/cproof/speedups_driver.py "$tree/asherah_django/core/_speedups$suffix" \
      tests/cproof/corpus/speedups
  ) >"$log" 2>&1 || { tail -n 60 "$log"; cp "$log" "$artifacts/"; echo "c_proof: asan FAILED" >&2; return 1; }
  no_reports "$log"
  grep -E "passed|^replay:|^driver:" "$log"
  echo "c-proof asan: ok in $((SECONDS - begun))s"
}

run_valgrind() {
  local tree log begun=$SECONDS
  tree=$(build valgrind gcc -O2 -g)
  log=$work/valgrind.log
  echo "== c-proof valgrind: memcheck on the driver ($tree, gcc -O2 -g)"
  # No suppressions: CPython with PYTHONMALLOC=malloc and OpenSSL 3 give memcheck nothing to
  # report here. CPython never frees some objects at exit (the module's own, made at import),
  # so leaks count as errors only when our code allocated them after import (below).
  # Both AES-GCM routes: OpenSSL 3's provider called directly, then EVP.
  local route
  for route in "" 1; do
    if ! env -u PYTHONDEVMODE PYTHONMALLOC=malloc ASHERAH_DJANGO_SPEEDUPS_EVP=$route nice \
      valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite \
      --errors-for-leak-kinds=none --num-callers=40 --track-origins=yes \
      "$PY" tests/cproof/speedups_driver.py \
      "$tree/asherah_django/core/_speedups$suffix" tests/cproof/corpus/speedups >>"$log" 2>&1; then
      tail -n 60 "$log"; cp "$log" "$artifacts/"; echo "c_proof: valgrind FAILED" >&2; return 1
    fi
  done
  local ours
  ours=$(awk '/are definitely lost in loss record/ {rec = $0; keep = 1; next}
    keep && /^==[0-9]+== $/ {if (rec ~ /_speedups\.c/ && rec !~ /PyInit__speedups/) print rec; keep = 0; next}
    keep {rec = rec "\n" $0}' "$log")
  if [ -n "$ours" ]; then
    echo "$ours"; cp "$log" "$artifacts/"; echo "c_proof: valgrind: our code leaks" >&2; return 1
  fi
  grep -E "^driver:|ERROR SUMMARY" "$log"
  echo "c-proof valgrind: ok in $((SECONDS - begun))s"
}

run_fuzz() {
  local tree log corpus begun=$SECONDS preload
  tree=$(build fuzz clang -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=all -g -O1)
  preload=$("$PY" -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so
  log=$work/fuzz.log
  corpus=$work/corpus
  rm -rf "$corpus" && mkdir -p "$corpus" "$work/crashes"
  cp tests/cproof/corpus/speedups/* "$corpus/"
  echo "== c-proof fuzz: atheris, ${fuzz_seconds}s, clang -fsanitize=fuzzer-no-link,address,undefined"
  local status=0
  (
    cd "$tree"
    env -u PYTHONDEVMODE "${sanitizer_env[@]}" "PYTHONPATH=$tree" "LD_PRELOAD=$preload" \
      nice "$PY" -m tests.cproof.fuzz_speedups fuzz -max_total_time="$fuzz_seconds" \
      -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 -max_len=8192 \
      -artifact_prefix="$work/crashes/" "$corpus"
  ) >"$log" 2>&1 || status=$?
  if [ $status != 0 ] || ! no_reports "$log"; then
    grep -vE '^#[0-9]+ ' "$log" | tail -n 60
    cp "$log" "$work"/crashes/* "$artifacts/" 2>/dev/null || true
    echo "c_proof: fuzz FAILED (exit $status); the input is in $artifacts" >&2
    return 1
  fi
  local runs edges
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  edges=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/([0-9]+[a-zA-Z]*).*/\1 edges, \2 features, \3 inputs (\4) in the reduced corpus/')
  echo "c-proof fuzz: $runs executions in ${fuzz_seconds}s ($(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")/s), $edges; $(ls "$corpus" | wc -l) corpus files ($(ls tests/cproof/corpus/speedups | wc -l) seeds); $(grep -m1 'inline 8-bit counters' "$log" | sed 's/.*(\([0-9]*\) inline.*/\1/') C counters in _speedups.c"
  if [ "$mode" = full ]; then
    # The C edges the whole grown corpus reaches, per function (the sanitizers' own check
    # branches count as edges too, so no function reaches all of its edges).
    (cd "$tree" && env -u PYTHONDEVMODE "${sanitizer_env[@]}" "PYTHONPATH=$tree" "LD_PRELOAD=$preload" \
      "$PY" -m tests.cproof.fuzz_speedups fuzz -runs=0 -print_coverage=1 "$corpus") >"$work/fuzz-coverage.log" 2>&1
    grep -E 'COVERED_FUNC: .*_speedups\.c' "$work/fuzz-coverage.log" | sed -E 's/.*edges: ([0-9]+\/[0-9]+) ([a-z_0-9A-Z]+) .*/  \2 \1/' | sort
    mkdir -p "$artifacts/corpus" && cp "$corpus"/* "$artifacts/corpus/"
  fi
  echo "c-proof fuzz: ok in $((SECONDS - begun))s"
}

run_coverage() {  # the C lines the driver, the tests and the (grown) corpus execute: gcov
  local tree begun=$SECONDS extra=""
  tree=$work/coverage
  build coverage gcc -O0 -g >/dev/null  # the copy of the package (its .so replaced below)
  gcc -c -fPIC -O0 --coverage -I"$include" "$source" -o "$tree/_speedups.o"
  gcc -shared --coverage "$tree/_speedups.o" -lcrypto -o "$tree/asherah_django/core/_speedups$suffix"
  [ -d "$work/corpus" ] && extra=$work/corpus
  echo "== c-proof coverage: gcov of _speedups.c (driver, test_speedups.py, corpus)"
  (
    cd "$tree"
    export PYTHONPATH=$tree ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1
    "$PY" tests/cproof/speedups_driver.py "$tree/asherah_django/core/_speedups$suffix" tests/cproof/corpus/speedups
    nice "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/unit/core/test_speedups.py
    nice "$PY" -m tests.cproof.fuzz_speedups replay tests/cproof/corpus/speedups $extra
  ) >"$work/coverage.log" 2>&1 || { tail -n 40 "$work/coverage.log"; echo "c_proof: coverage run FAILED" >&2; return 1; }
  (cd "$tree" && gcov -o "$tree" "$root/$source" >"$work/gcov.log" 2>&1)
  grep -A1 "File '.*_speedups.c'" "$work/gcov.log" | tail -n1 | sed 's/^/c-proof coverage: _speedups.c: /'
  cp "$tree/_speedups.c.gcov" "$artifacts/" 2>/dev/null || true
  echo "c-proof coverage: ok in $((SECONDS - begun))s (unexecuted lines: '#####' in $artifacts/_speedups.c.gcov)"
}

begun=$SECONDS
status=0
for part in $parts; do
  case $part in
    asan) run_asan || status=1 ;;
    valgrind) run_valgrind || status=1 ;;
    fuzz) run_fuzz || status=1 ;;
    coverage) run_coverage || status=1 ;;
    *) echo "c_proof: unknown part '$part'" >&2; exit 2 ;;
  esac
done
if [ "$mode" = full ] && [ $status = 0 ] && [[ " $parts " == *" fuzz "* ]] && [[ " $parts " == *" asan "* ]]; then
  # The corpus the fuzzer grew, under gcc's sanitizers as well.
  CPROOF_EXTRA_CORPUS=$work/corpus run_asan || status=1
fi
echo "c-proof $mode: $([ $status = 0 ] && echo ok || echo FAILED) in $((SECONDS - begun))s"
exit $status
