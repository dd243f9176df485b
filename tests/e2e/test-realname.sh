#!/bin/bash
# The plugin under its real name: `aufs-graphdriver` on its default socket
# /run/docker/plugins/aufs-graphdriver.sock (no --socket given), dockerd
# `-s aufs-graphdriver`: Home is <data-root>/aufs-graphdriver with the aufs
# layout, and a container runs. Skipped if that socket is in use already.
. "$(dirname "$0")/lib.sh"
[ "$GR_E2E_SUBJECT" = plugin ] || { log "skip: only for the plugin"; exit 77; }
require_root
if [ -S /run/docker/plugins/aufs-graphdriver.sock ] &&
  curl -s --max-time 2 --unix-socket /run/docker/plugins/aufs-graphdriver.sock -X POST http://p/Plugin.Activate >/dev/null 2>&1; then
  log "skip: /run/docker/plugins/aufs-graphdriver.sock is served by another process"
  exit 77
fi
GR_PLUGIN_NAME=aufs-graphdriver GR_PLUGIN_DEFAULT_SOCKET=1
e2e_init realname
dockerd_start ov overlay2 || die "overlay2 dockerd"
start_subject pl || die "plugin on its default socket"
E2E_IMAGES="base special" ensure_images ov pl || die "images"
home=$(driver_home pl)
check "Home is <data-root>/aufs-graphdriver" test "$home" = "${DAEMON_DIR[pl]}/data/aufs-graphdriver"
check "aufs layout: layers/ diff/ mnt/" test -d "$home/layers" -a -d "$home/diff" -a -d "$home/mnt"
check "image metadata in image/aufs-graphdriver" test -d "${DAEMON_DIR[pl]}/data/image/aufs-graphdriver/layerdb"
check "a layer's parent chain in layers/<id>" test "$(cat "$home"/layers/* | wc -l)" -gt 0
check "a container runs" test "$(dk pl run --rm --network none e2e/special cat /data/hello)" = "hello again"
check "docker info shows the driver" test "$(dk pl info -f '{{.Driver}}')" = aufs-graphdriver
e2e_finish
