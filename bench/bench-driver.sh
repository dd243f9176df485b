#!/bin/bash
# The plugin against dockerd's built-in overlay2, in one run, on the same
# machine and the same input: medians of N runs (default 5) and the ratio
# plugin/overlay2 (the two daemons take turns, run by run) for
#   load    docker load of a 4-layer image of ~320 MB (busybox + 3 x 105 MiB of
#           random data, made locally by tests/e2e/mktar.py)
#   run     docker run --rm IMG true
#   commit  docker commit of a container that wrote 100 MiB
#   save    docker save of the 4-layer image
# and the plugin's peak RSS (VmHWM, reset through clear_refs) while it applies
# a single 1 GiB layer. Root only; not part of CI.
#
#   GR_BUILDDIR=/path/to/build bench/bench-driver.sh [RUNS]
#   GR_BENCH_CACHE  where the generated image tarballs stay (default
#                   $GR_E2E_CACHE/bench, about 1.4 GB)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/e2e/lib.sh
. "$top/tests/e2e/lib.sh"
RUNS=${1:-5}
CACHE=${GR_BENCH_CACHE:-$GR_E2E_CACHE/bench}
GR_PLUGIN_LOG_LEVEL=${GR_PLUGIN_LOG_LEVEL:-warn}
e2e_init bench
mkdir -p "$CACHE"

for k in big huge; do
  if [ ! -s "$CACHE/$k.tar" ]; then
    log "making the $k image ($CACHE/$k.tar)"
    python3 "$E2E_DIR/mktar.py" image "$CACHE/$k.tar.tmp" "$k" "bench/$k:latest" &&
      mv "$CACHE/$k.tar.tmp" "$CACHE/$k.tar" || die "mktar $k"
  fi
done
log "big image: $(du -m "$CACHE/big.tar" | cut -f1) MB, huge image: $(du -m "$CACHE/huge.tar" | cut -f1) MB"

dockerd_start ov overlay2 || die "overlay2 dockerd"
start_subject pl || die "plugin dockerd"
IMG=bench/big:latest

# secs CMD...: wall time of CMD in seconds (3 decimals); CMD's output dropped.
secs ()
{
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2>&1 || { log "failed: $*"; echo NaN; return 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l 2>/dev/null || python3 -c "print($t1 - $t0)"
}
median () { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A T
drop_caches () { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# One run of each operation on daemon $1; prints the seconds.
once_load ()
{
  dk "$1" rmi -f "$IMG" > /dev/null 2>&1
  dk "$1" image prune -f > /dev/null 2>&1
  drop_caches
  secs dk "$1" load -i "$CACHE/big.tar"
}
once_run () { secs dk "$1" run --rm --network none "$IMG" true; }
once_commit ()
{
  dk "$1" run --name cbench --network none "$IMG" sh -c 'head -c 104857600 /dev/urandom > /blob' \
    > /dev/null 2>&1 || { log "$1: writing 100 MiB in a container failed"; echo NaN; return 1; }
  secs dk "$1" commit cbench bench/commit
  dk "$1" rm cbench > /dev/null
  dk "$1" rmi bench/commit > /dev/null
}
once_save ()
{
  drop_caches
  secs sh -c "$DOCKER -H unix://${DAEMON_SOCK[$1]} save $IMG > /dev/null"
}

# The two daemons take turns run by run (ov, pl, ov, pl, ...), so that
# what builds up on the machine over a series (page cache, writeback,
# freed inodes) weighs on both alike.
for op in load run commit save; do
  log "$op: $RUNS runs on each, alternating"
  [ "$op" = run ] && for d in ov pl; do once_run "$d" > /dev/null; done # warm up
  declare -a S_ov=() S_pl=()
  for ((i = 0; i < RUNS; i++)); do
    S_ov+=("$("once_$op" ov)")
    S_pl+=("$("once_$op" pl)")
  done
  log "$op: overlay2 ${S_ov[*]}; plugin ${S_pl[*]}"
  T[$op.ov]=$(median "${S_ov[@]}")
  T[$op.pl]=$(median "${S_pl[@]}")
  unset S_ov S_pl
done

# Peak RSS of the plugin while it applies one 1 GiB layer.
rss=""
if [ "$GR_E2E_SUBJECT" = plugin ] && [ -n "$PLUGIN_PID" ]; then
  before=$(awk '/VmRSS/ { print $2 }' "/proc/$PLUGIN_PID/status")
  echo 5 > "/proc/$PLUGIN_PID/clear_refs" # resets VmHWM to the current RSS
  log "docker load of the 1 GiB layer into the plugin"
  t_huge=$(secs dk pl load -i "$CACHE/huge.tar")
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$PLUGIN_PID/status")
  rss="plugin RSS: ${before} kB before, peak ${hwm} kB ($((hwm / 1024)) MB) while applying a 1 GiB layer (${t_huge} s); target < 50 MB"
fi

echo
printf '%-8s %12s %12s %8s %8s\n' op "overlay2 s" "plugin s" ratio target
for op in load run commit save; do
  case $op in load) tgt=1.10 ;; run) tgt=1.15 ;; commit) tgt=1.20 ;; save) tgt=1.10 ;; esac
  a=${T[$op.ov]} b=${T[$op.pl]}
  ratio=$(python3 -c "print('%.2f' % ($b / $a))" 2>/dev/null || echo "?")
  printf '%-8s %12.3f %12.3f %8s %8s\n' "$op" "$a" "$b" "$ratio" "<= $tgt"
done
[ -n "$rss" ] && echo "$rss"
echo "(medians of $RUNS runs; $(nproc) CPUs; $(uname -r); $($DOCKERD --version | cut -d, -f1))"
e2e_finish
