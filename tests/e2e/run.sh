#!/bin/bash
# Run the end-to-end tests (tests/e2e/test-*.sh, or the ones named), two at
# a time; each exits 0 (pass), 77 (skip) or anything else (fail). Logs go
# to $GR_E2E_LOGDIR (default: a temp dir); a failed test's log tail is shown.
# The last line is "N passed, N failed, N skipped".
#
#   GR_BUILDDIR=/path/to/build tests/e2e/run.sh [test-x.sh ...]
#   GR_E2E_TIMEOUT  seconds per test (default 900)
#   GR_E2E_JOBS     tests at once (default 2)
set -u
dir=$(cd "$(dirname "$0")" && pwd)
logdir=${GR_E2E_LOGDIR:-$(mktemp -d /tmp/gr-e2e-logs.XXXXXX)}
mkdir -p "$logdir"
timeout_s=${GR_E2E_TIMEOUT:-900}

if [ $# -gt 0 ]; then
  tests=("$@")
else
  # all of them, except those `make check` runs already (TESTS in Makefile.am)
  tests=()
  for t in "$dir"/test-*.sh; do
    t=$(basename "$t")
    if grep -q -E "^TESTS.*tests/e2e/$t" "$dir/../../Makefile.am" 2>/dev/null; then
      continue
    fi
    tests+=("$t")
  done
fi

pass=0 fail=0 skip=0 failed=()
jobs_max=${GR_E2E_JOBS:-2}

# run_one T: run test T, leaving its exit code and seconds beside its log.
run_one ()
{
  local t=$1 log=$logdir/${1%.sh}.log start rc
  start=$(date +%s)
  # setsid: a timeout kills the test's whole process group (its trap still
  # runs on SIGTERM and stops its daemons).
  timeout -s TERM -k 60 "$timeout_s" setsid bash "$dir/$t" > "$log" 2>&1 < /dev/null
  rc=$?
  [ $rc = 124 ] && echo "timeout after ${timeout_s}s" >> "$log"
  echo "$rc $(($(date +%s) - start))" > "$logdir/${t%.sh}.rc"
}

# report T: count T's result and print it (with the failed checks).
report ()
{
  local t=$1 log=$logdir/${1%.sh}.log rc=1 secs=0
  read -r rc secs < "$logdir/${t%.sh}.rc" || true
  case $rc in
    0) pass=$((pass + 1)); echo "PASS: $t (${secs}s)" ;;
    77) skip=$((skip + 1)); echo "SKIP: $t (${secs}s)" ;;
    *)
      fail=$((fail + 1))
      failed+=("$t")
      echo "FAIL: $t (${secs}s, exit $rc; log $log)"
      # the checks that failed, then the end of the log (daemon logs left out)
      grep -E '(FAIL|FATAL):' "$log" | head -n 30 | sed 's/^/    /'
      grep -v -E 'level=|^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$log" | tail -n 15 | sed 's/^/    | /'
      ;;
  esac
}

# The tests are independent (private daemons, dirs, ports, plugin names):
# GR_E2E_JOBS of them run at once (default 2).
# A test whose checks hang on timing (a kill landing between two layers, a
# client giving up on a slow registry) says `# e2e: alone` and runs after
# the others, by itself.
start_all=$(date +%s)
alone=()
for t in "${tests[@]}"; do
  t=$(basename "$t")
  if grep -q '^# e2e: alone' "$dir/$t"; then
    alone+=("$t")
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
    wait -n
  done
  echo "start: $t"
  run_one "$t" &
done
wait
for t in "${alone[@]}"; do
  echo "start: $t (alone)"
  run_one "$t"
done
for t in "${tests[@]}"; do
  report "$(basename "$t")"
done
echo "e2e: $(( $(date +%s) - start_all ))s, logs in $logdir"
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
