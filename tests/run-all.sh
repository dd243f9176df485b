#!/bin/bash
# Every test: build with -Werror and `make check` (unit tests and the
# protocol test), the same under AddressSanitizer + UBSan in a second build,
# then the end-to-end suite (tests/e2e/run.sh) against the first build.
# Ends with "N passed, N failed, N skipped" over all of them; exits non-zero
# if anything failed.
#
#   GR_BUILDDIR      first build dir (default: <top>/_build)
#   GR_SAN_BUILDDIR  sanitizer build dir (default: <top>/_build-san)
#   GR_SKIP_SAN=1    skip the sanitizer build; GR_SKIP_E2E=1 skip the e2e suite
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export GR_BUILDDIR=${GR_BUILDDIR:-$top/_build}
san=${GR_SAN_BUILDDIR:-$top/_build-san}
jobs=$(nproc 2>/dev/null || echo 2)
pass=0 fail=0 skip=0 failed=()
t0=$(date +%s)

say () { printf '=== %s (%ss)\n' "$*" $(($(date +%s) - t0)); }

# count_check BUILDDIR LABEL: add the automake test-suite summary to the totals.
count_check ()
{
  local log=$1/test-suite.log p f s
  if [ ! -f "$log" ]; then
    fail=$((fail + 1)); failed+=("$2 (no test-suite.log)")
    return
  fi
  p=$(sed -n 's/^# PASS: *\([0-9]*\)/\1/p' "$log" | head -n1)
  f=$(sed -n 's/^# FAIL: *\([0-9]*\)/\1/p' "$log" | head -n1)
  f=$((${f:-0} + $(sed -n 's/^# ERROR: *\([0-9]*\)/\1/p' "$log" | head -n1 | grep . || echo 0)))
  f=$((f + $(sed -n 's/^# XPASS: *\([0-9]*\)/\1/p' "$log" | head -n1 | grep . || echo 0)))
  s=$(sed -n 's/^# SKIP: *\([0-9]*\)/\1/p' "$log" | head -n1)
  pass=$((pass + ${p:-0})); fail=$((fail + f)); skip=$((skip + ${s:-0}))
  [ "$f" -gt 0 ] && failed+=("$2")
  echo "$2: ${p:-0} passed, $f failed, ${s:-0} skipped"
}

# build_and_check DIR LABEL CONFIGURE-ARGS...
build_and_check ()
{
  local dir=$1 label=$2
  shift 2
  mkdir -p "$dir"
  say "$label: configure $*"
  if ! (cd "$dir" && { [ -f Makefile ] || "$top/configure" "$@" > configure.out 2>&1 || { cat configure.out; false; }; }); then
    fail=$((fail + 1)); failed+=("$label: configure"); return 1
  fi
  say "$label: make"
  if ! make -C "$dir" -j"$jobs" > "$dir/make.out" 2>&1; then
    tail -n 40 "$dir/make.out"
    fail=$((fail + 1)); failed+=("$label: build"); return 1
  fi
  say "$label: make check"
  rm -f "$dir/test-suite.log"
  make -C "$dir" -j"$jobs" check > "$dir/check.out" 2>&1
  local rc=$?
  grep -E '^(PASS|FAIL|SKIP|ERROR|XPASS|XFAIL):' "$dir/check.out" || true
  if [ $rc -ne 0 ]; then
    # the logs of what failed
    for l in $(grep -l -E '^:test-result: (FAIL|ERROR)' "$dir"/tests/*/*.trs 2>/dev/null); do
      echo "--- ${l%.trs}.log"; tail -n 40 "${l%.trs}.log"
    done
  fi
  count_check "$dir" "$label"
}

cd "$top"
if [ ! -x configure ]; then
  say "autoreconf -fi"
  autoreconf -fi > /dev/null 2>&1 || { autoreconf -fi; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi

build_and_check "$GR_BUILDDIR" "unit" --enable-werror
built_ok=$?
if [ -z "${GR_SKIP_SAN:-}" ]; then
  build_and_check "$san" "unit (ASan+UBSan)" --enable-werror --enable-sanitizers
fi

if [ -z "${GR_SKIP_E2E:-}" ]; then
  if [ $built_ok -eq 0 ] && [ -x "$GR_BUILDDIR/plugin/aufs-graphdriver" ]; then
    say "e2e"
    out=$(mktemp)
    "$top/tests/e2e/run.sh" 2>&1 | tee "$out"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
    if [ -z "$line" ]; then
      fail=$((fail + 1)); failed+=("e2e: no summary")
    else
      pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
      [ "$f" -gt 0 ] && failed+=("e2e")
    fi
    rm -f "$out"
  else
    fail=$((fail + 1)); failed+=("e2e: no plugin binary")
  fi
fi

say "done"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
