#!/bin/bash
# Hostile layers (REFERENCE.md §6 breakout classes, made by mktar.py) through
# `docker load` and `docker import`: nothing appears, changes or disappears
# outside the layer; names and link targets that climb out with `..`,
# whiteouts of `.`/`..` and truncated tars are refused (overlay2 confines
# `..` names to the layer by extracting in a chroot and accepts them; the
# plugin must refuse them, REFERENCE.md §6); a refused layer leaves no half
# layer behind; the daemon keeps working. The cases that symlinks make
# hostile must be confined (refusing them is fine too). overlay2 gets the
# same tars so that its behaviour is logged alongside.
. "$(dirname "$0")/lib.sh"
e2e_init hostile
dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
start_subject pl || die "cannot start the daemon under test"
E2E_IMAGES="base" ensure_images ov ov pl || die "cannot load the test images"

S=$E2E_WORK/sentinel
mkdir -p "$S"
echo victim > "$S/victim"
chmod 0600 "$S/victim"

# What must not change: the sentinel dir (names, modes, link counts,
# contents) and the names around the work dir and the data roots.
snapshot ()
{
  (cd "$S" && find . -printf '%p %m %n %s\n' | sort && cat victim)
  ls -A "$E2E_WORK" "${DAEMON_DIR[pl]}" "${DAEMON_DIR[pl]}/data" "$(driver_home pl)"
  ls -d /pwned* /tmp/pwned* 2>/dev/null
}
# The driver's layer entries (to spot half layers left by a refused tar).
layer_count ()
{
  local h
  h=$(driver_home "$1")
  case "${DAEMON_DRIVER[$1]}" in
    plugin) find "$h" -mindepth 2 -maxdepth 2 | grep -v '/mnt/' | wc -l ;;
    overlay2) ls -A "$h" | grep -v -x l | wc -l ;;
    vfs) ls -A "$h/dir" | wc -l ;;
  esac
}
# Stray names: a "pwned" anywhere below the data root but outside a layer dir.
strays ()
{
  find "${DAEMON_DIR[$1]}/data" "$E2E_WORK" -name 'pwned*' 2>/dev/null |
    grep -v -E "/(diff|dir)/[0-9a-f]{64}(-init)?/|/overlay2/[0-9a-f]{64}(-init)?/diff/" || true
}

F=$E2E_WORK/files
mkdir -p "$F"
snapshot > "$F/snap.before"
for how in save import; do
  for c in $(python3 "$E2E_DIR/mktar.py" cases); do
    t=$F/$c.$how.tar
    if [ $how = save ]; then
      python3 "$E2E_DIR/mktar.py" hostile "$t" "$c" "$S" --save || die "mktar $c"
    else
      python3 "$E2E_DIR/mktar.py" hostile "$t" "$c" "$S" || die "mktar $c"
    fi
    case "$c" in
      dotdot-* | hardlink-dotdot | whiteout-rel-path | whiteout-dotdot | whiteout-dot | truncated) must_refuse=1 ;;
      *) must_refuse=0 ;;
    esac
    daemons="ov pl"
    [ $how = import ] && daemons=pl # overlay2's answers are logged once, for load
    for d in $daemons; do
      n_before=$(layer_count "$d")
      t0=$(date +%s)
      if [ $how = save ]; then
        dk "$d" load -i "$t" > "$F/out" 2>&1
      else
        dk "$d" import "$t" "e2e/hostile-$c-import" > "$F/out" 2>&1
      fi
      rc=$?
      secs=$(($(date +%s) - t0))
      refused=$([ $rc -ne 0 ] && echo refused || echo accepted)
      log "$d: $c ($how): $refused: $(head -c 300 "$F/out" | tr '\n' ' ')"
      [ "$d" = pl ] || continue
      snapshot > "$F/snap.after"
      check "$c ($how): nothing changed outside" same_file "$F/snap.before" "$F/snap.after" "outside state after $c"
      check "$c ($how): no stray files" test -z "$(strays pl)"
      if [ $must_refuse = 1 ]; then
        check "$c ($how): refused" test $rc -ne 0
      fi
      if [ $rc -ne 0 ]; then
        check "$c ($how): no half layer left" test "$(layer_count pl)" = "$n_before"
        # dockerd retries a request that failed in transport for 15 s and then
        # shows "io: read/write on closed pipe" instead of the plugin's reason.
        # (A truncated tar is cut by dockerd's own reader, and a tar naming a
        # path twice by dockerd's own tar-split, "duplicates of file paths not
        # supported": a transport error there is dockerd's doing.)
        case $c in
          truncated | symlink-replace-dir | symlink-victim-overwrite) ;;
          *)
            check "$c ($how): refused with the driver's reason, not a transport error (${secs}s)" \
              eval '! grep -q -E "closed pipe|connection reset|Unable to connect" "$F/out"'
            ;;
        esac
      fi
      dk pl info >/dev/null 2>&1 || die "the daemon under test stopped answering after $c"
    done
    rm -f "$t"
  done
done
check "still runs containers after all that" test "$(dk pl run --rm --network none e2e/base echo alive)" = alive
assert_no_mounts pl
e2e_finish
