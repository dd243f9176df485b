#!/bin/bash
# docker rm, rmi and system prune -a leave no mounts and no layer dirs behind
# (and, so that the check can fail, a running container does have its mount).
. "$(dirname "$0")/lib.sh"
e2e_init cleanup
start_subject pl || die "cannot start the daemon under test"
dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
E2E_IMAGES="base special deep built" ensure_images ov pl || die "cannot load the test images"

home=$(driver_home pl)

# The layer dirs of the subject: every entry of the driver's per-layer dirs
# (aufs layout: layers/ diff/ mnt/; overlay2: <id>/; vfs: dir/<id>).
layer_dirs ()
{
  local sub
  case "$GR_E2E_SUBJECT" in
    plugin) for sub in layers diff mnt; do [ -d "$home/$sub" ] && ls -A "$home/$sub" | sed "s|^|$sub/|"; done ;;
    overlay2) ls -A "$home" | grep -v -x l; ls -A "$home/l" 2>/dev/null ;;
    vfs) ls -A "$home/dir" 2>/dev/null ;;
  esac
  ls -A "${DAEMON_DIR[pl]}/data/image/"*/layerdb/sha256 2>/dev/null
  ls -A "${DAEMON_DIR[pl]}/data/image/"*/layerdb/mounts 2>/dev/null
  return 0
}

check "layer dirs exist after docker load" test -n "$(layer_dirs)"
dk pl run -d --name running --network none e2e/special sleep 600 >/dev/null || fail "docker run -d"
dk pl run --name stopped --network none e2e/deep >/dev/null || fail "docker run e2e/deep"
dk pl create --name created --network none e2e/built >/dev/null || fail "docker create"
if [ "$GR_E2E_SUBJECT" != vfs ]; then
  check "a running container's rootfs is a mount" test -n "$(layer_mounts pl)"
fi
rm_all ()
{
  dk pl rm -f running stopped created >/dev/null || return 1
  [ -z "$(dk pl ps -aq)" ] || return 1
  [ -z "$(layer_mounts pl)" ] || { log "mounts after docker rm: $(layer_mounts pl)"; return 1; }
  [ -z "$(ls -A "${DAEMON_DIR[pl]}/data/image/"*/layerdb/mounts)" ] || return 1
}
check "docker rm -f: no mounts, no container layers" rm_all

rmi_one ()
{
  local before after
  before=$(layer_dirs | wc -l)
  dk pl rmi e2e/deep >/dev/null || return 1
  after=$(layer_dirs | wc -l)
  log "layer entries: $before before docker rmi e2e/deep, $after after"
  [ "$after" -lt "$before" ]
}
check "docker rmi removes the image's layers" rmi_one

prune ()
{
  dk pl run --name again --network none e2e/special true || return 1
  dk pl system prune -a -f >/dev/null || return 1
  [ -z "$(dk pl images -aq)" ] || { log "images left: $(dk pl images -a)"; return 1; }
  local left
  left=$(layer_dirs)
  [ -z "$left" ] || { log "layer dirs left after prune: $left"; return 1; }
  [ -z "$(layer_mounts pl)" ] || { log "mounts left: $(layer_mounts pl)"; return 1; }
}
check "docker system prune -a: no images, no layer dirs, no mounts" prune
if [ "$GR_E2E_SUBJECT" = plugin ]; then
  check "no -removing leftovers in the plugin home" test -z "$(find "$home" -maxdepth 2 -name '*-removing')"
fi

# The daemon stops cleanly and leaves nothing mounted either.
dockerd_stop pl
plugin_stop
check "after stopping: no mounts below the data root" test -z "$(layer_mounts pl)"
e2e_finish
