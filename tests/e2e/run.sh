#!/bin/bash
# Run the end-to-end tests (tests/e2e/test-*.sh, or the ones named) one after
# the other; each exits 0 (pass), 77 (skip) or anything else (fail). Logs go
# to $GR_E2E_LOGDIR (default: a temp dir); a failed test's log tail is shown.
# The last line is "N passed, N failed, N skipped".
#
#   GR_BUILDDIR=/path/to/build tests/e2e/run.sh [test-x.sh ...]
#   GR_E2E_TIMEOUT  seconds per test (default 900)
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
start_all=$(date +%s)
for t in "${tests[@]}"; do
  t=$(basename "$t")
  log=$logdir/${t%.sh}.log
  start=$(date +%s)
  # setsid: a timeout kills the test's whole process group (its trap still
  # runs on SIGTERM and stops its daemons).
  timeout -s TERM -k 60 "$timeout_s" setsid bash "$dir/$t" > "$log" 2>&1 < /dev/null
  rc=$?
  secs=$(($(date +%s) - start))
  case $rc in
    0) pass=$((pass + 1)); echo "PASS: $t (${secs}s)" ;;
    77) skip=$((skip + 1)); echo "SKIP: $t (${secs}s)" ;;
    *)
      fail=$((fail + 1))
      failed+=("$t")
      [ $rc = 124 ] && echo "timeout after ${timeout_s}s" >> "$log"
      echo "FAIL: $t (${secs}s, exit $rc; log $log)"
      # the checks that failed, then the end of the log (dockerd noise left out)
      grep -E '(FAIL|FATAL):' "$log" | head -n 30 | sed 's/^/    /'
      grep -v 'level=' "$log" | tail -n 15 | sed 's/^/    | /'
      ;;
  esac
done
echo "e2e: $(( $(date +%s) - start_all ))s, logs in $logdir"
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
