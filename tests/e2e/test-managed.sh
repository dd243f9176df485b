#!/bin/bash
# aufs-graphdriver as a managed (v2) plugin, the way users install it:
#   1. `docker plugin create aufs-graphdriver DIR` (DIR from build-rootfs.sh),
#      `docker plugin enable`, dockerd restarted with --experimental
#      -s aufs-graphdriver;
#   2. the checks of the legacy-socket tests against a dockerd on overlay2:
#      load, export listings, save digests, run, diff, commit, restart,
#      rm/rmi/prune; Home lies under the propagated mount and the plugin's
#      mounts are the ones dockerd and runc use;
#   3. the plugin and its data survive `docker plugin disable -f`/`enable`
#      and a dockerd restart;
#   4. `docker plugin push` to a docker-registry on 127.0.0.1, `docker plugin
#      install` on a second, fresh dockerd, which then runs containers on it.
# Root only (77 otherwise).  Timings of each phase go to stderr.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/managed-lib.sh"
managed_init managed

# GR_MANAGED_IMAGES="base special" for a quicker run on fewer test images.
E2E_IMAGES=${GR_MANAGED_IMAGES:-$E2E_IMAGES}
N=$MANAGED_NAME
# Exercise `docker plugin set` (the plugin must be disabled for it).
GR_MANAGED_SET=${GR_MANAGED_SET-LOG_LEVEL=debug}
T0=$(date +%s.%N)
phase_t=$T0
phase ()
{
  local now
  now=$(date +%s.%N)
  log "time: $1: $(awk -v a="$phase_t" -v b="$now" 'BEGIN { printf "%.1f", b - a }') s"
  phase_t=$now
}

# ------------------------------------------------------------ 1. create, enable
dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
log "overlay2 driver status: $(dk ov info -f '{{json .DriverStatus}}')"
phase "overlay2 dockerd up"
managed_start pl || die "cannot start a dockerd on the managed plugin"
phase "plugin create + enable + dockerd restart on it"

home=$(managed_driver_home pl)
prop=$(managed_propagated pl)
ID=${MANAGED_ID[pl]}

driver_is () { [ "$(dk "$1" info --format '{{.Driver}}')" = "$2" ]; }
check "dockerd runs on driver $N" driver_is pl "$N"
check "plugin $N:latest is enabled" \
  test "$(dk pl plugin inspect -f '{{.Enabled}} {{.Name}}' "$N")" = "true $N:latest"
check "the plugin socket is /run/docker/plugins/<id>/aufs.sock" test -S "/run/docker/plugins/$ID/aufs.sock"
check "Home is /data/$N in the plugin = $home on the host" \
  test -d "$home/layers" -a -d "$home/diff" -a -d "$home/mnt"
check "no Home under the data root itself" test ! -e "${DAEMON_DIR[pl]}/data/$N"
check "the propagated mount is an rshared mount" \
  awk -v p="$prop" '$5 == p && / shared:/ { f = 1 } END { exit !f }' /proc/self/mountinfo
env_set ()
{
  local k
  for k in $GR_MANAGED_SET; do
    dk pl plugin inspect -f '{{json .Settings.Env}}' "$N" | grep -q -F "\"$k\"" || return 1
  done
}
check "docker plugin set $GR_MANAGED_SET is in the plugin's settings" env_set
plugin_logs () { grep -c "plugin=$ID" "${DAEMON_DIR[pl]}/dockerd.log"; }
check "the plugin's stderr is in dockerd's log" plugin_logs

# ------------------------------------------------------------ 2. images
ensure_images ov ov pl || die "cannot load the test images"
phase "build (if not cached) and load of the test images into both daemons"

cmp_export ()
{
  export_list ov "$1" --mtime > "$E2E_WORK/ov.$2.list" || return 1
  export_list pl "$1" --mtime > "$E2E_WORK/pl.$2.list" || return 1
  [ -s "$E2E_WORK/ov.$2.list" ] || return 1
  same_file "$E2E_WORK/ov.$2.list" "$E2E_WORK/pl.$2.list" "export listings of $1"
}
cmp_save ()
{
  layer_digests ov "$1" > "$E2E_WORK/ov.$2.dig" || return 1
  layer_digests pl "$1" > "$E2E_WORK/pl.$2.dig" || return 1
  same_file "$E2E_WORK/ov.$2.dig" "$E2E_WORK/pl.$2.dig" "docker save digests of $1"
}
same_id ()
{
  local a b
  a=$(dk ov image inspect -f '{{.Id}} {{.RootFS.Layers}}' "$1") || return 1
  b=$(dk pl image inspect -f '{{.Id}} {{.RootFS.Layers}}' "$1") || return 1
  [ "$a" = "$b" ]
}
IMAGES=""
for t in $E2E_IMAGES; do
  image_ok ov "e2e/$t:latest" || continue
  IMAGES="$IMAGES $t"
  check "e2e/$t: image ID and diffIDs" same_id "e2e/$t:latest"
  check "e2e/$t: docker export listing" cmp_export "e2e/$t:latest" "$t"
  check "e2e/$t: docker save layer digests" cmp_save "e2e/$t:latest" "$t"
done
layers_in_home () { find "$home/diff" -mindepth 1 -maxdepth 1 | wc -l; }
check "the loaded layers are in Home/diff (under the propagated mount)" test "$(layers_in_home)" -gt 0
phase "export listings and save digests"

# ------------------------------------------------------------ containers
run_out ()
{
  dk "$1" run --rm --network none e2e/base:latest sh -c 'echo hello > /tmp/x && cat /tmp/x && ls /bin/sh'
}
check "docker run on the plugin" test "$(run_out pl | tr '\n' ' ')" = "hello /bin/sh "

# A long-running container: its rootfs mount, made by the plugin in its own
# mount namespace, must be the one dockerd and runc see on the host.
cid=$(dk pl run -d --network none --name keep e2e/base:latest sh -c 'echo kept > /kept; sleep 1000') ||
  die "docker run -d"
mount_id ()
{
  cat "${DAEMON_DIR[pl]}/data/image/$N/layerdb/mounts/$1/mount-id"
}
mid=$(mount_id "$cid")
rootfs_is_ours ()
{
  awk -v m="$home/mnt/$mid" '$5 == m { print $9; f = 1 } END { exit !f }' /proc/self/mountinfo | grep -q -x -e overlay -e aufs
}
check "the container's root is the plugin's mount $home/mnt/<id>, on the host" rootfs_is_ours
container_sees ()
{
  wait_for 10 dk pl exec keep cat /kept && [ "$(dk pl exec keep cat /kept)" = kept ]
}
check "docker exec reads the container's file" container_sees
check "the host reads it through the propagated mount" test "$(cat "$home/mnt/$mid/kept" 2>/dev/null)" = kept
dk pl stop -t 1 keep > /dev/null

# diff and commit, same on both daemons
change ()
{
  local img=e2e/base:latest
  case " $IMAGES " in *" special "*) img=e2e/special:latest ;; esac
  dk "$1" run --network none --name chg "$img" sh -c \
    'rm -rf /etc/passwd /data/dir1 2>/dev/null; mkdir -p /new/d; echo x > /new/d/f; ln /new/d/f /new/hl; ln -s ../x /new/sl; chmod 4755 /new/d/f' \
    > /dev/null 2>&1 || true
  dk "$1" diff chg | sort > "$E2E_WORK/$1.diff"
  dk "$1" commit chg e2e/committed:latest > /dev/null || return 1
}
check "docker commit on overlay2" change ov
check "docker commit on the plugin" change pl
check "docker diff like overlay2" same_file "$E2E_WORK/ov.diff" "$E2E_WORK/pl.diff" "docker diff"
cmp_committed ()
{
  export_list ov e2e/committed:latest > "$E2E_WORK/ov.committed.list" &&
    export_list pl e2e/committed:latest > "$E2E_WORK/pl.committed.list" &&
    same_file "$E2E_WORK/ov.committed.list" "$E2E_WORK/pl.committed.list" "export listings of the committed image"
}
check "the committed image exports like overlay2's" cmp_committed
phase "run, exec, diff, commit"

# ------------------------------------------------------------ 3. restarts
dockerd_stop pl
check "dockerd stop leaves no mount under its data root" test -z "$(mounts_below "${DAEMON_DIR[pl]}/data")"
dockerd_start pl plugin || die "dockerd did not come back on the plugin"
phase "dockerd restart on the plugin"
all_images ()
{
  local t
  for t in $IMAGES committed; do image_ok pl "e2e/$t:latest" || return 1; done
}
check "every image is there after a dockerd restart" all_images
restart_keep ()
{
  dk pl start keep > /dev/null && wait_for 10 dk pl exec keep cat /kept &&
    [ "$(dk pl exec keep cat /kept)" = kept ]
}
check "the stopped container starts again with its file" restart_keep

disable_in_use () { ! dk pl plugin disable "$N" > /dev/null 2>&1; }
check "docker plugin disable (no -f) is refused while dockerd uses it" disable_in_use
dk pl stop -t 1 keep > /dev/null
check "docker plugin disable -f" dk pl plugin disable -f "$N" > /dev/null
check "disabled: the plugin's process is gone" test ! -S "/run/docker/plugins/$ID/aufs.sock"
check "disabled: the data stays" test -d "$home/diff" -a "$(layers_in_home)" -gt 0
check "docker plugin enable" dk pl plugin enable "$N" > /dev/null
phase "plugin disable -f + enable"
after_enable ()
{
  [ "$(dk pl run --rm --network none e2e/base:latest cat /etc/hostname | wc -l)" = 1 ] &&
    restart_keep
}
# dockerd sends GraphDriver.Init only when it starts: the plugin replays the
# Init it kept under /data (--init-state), so no dockerd restart is needed.
check "after disable/enable: the running dockerd keeps working (Init replayed)" after_enable
check "after disable/enable: every image is there" all_images
check "after disable/enable: the container starts with its file" restart_keep
check "after disable/enable: docker run" test "$(run_out pl | tr '\n' ' ')" = "hello /bin/sh "
dk pl stop -t 1 keep > /dev/null
phase "checks after disable/enable"

# ------------------------------------------------------------ rm, rmi, prune
dk pl rm -f keep chg > /dev/null
for t in $IMAGES committed; do
  dk pl rmi -f "e2e/$t:latest" > /dev/null 2>&1 || true
done
dk pl rmi -f e2e/debian-base:latest > /dev/null 2>&1 || true
dk pl system prune -af > /dev/null
check "rm/rmi/prune: no image left" test -z "$(dk pl images -aq)"
check "rm/rmi/prune: no mount left" assert_no_mounts pl
check "rm/rmi/prune: Home/diff is empty" test "$(layers_in_home)" = 0
check "rm/rmi/prune: Home/layers is empty" test -z "$(ls -A "$home/layers")"
phase "rm, rmi, prune"

# ------------------------------------------------------------ 4. push, install
registry_start || die "cannot start docker-registry"
REF=$REGISTRY_ADDR/$N:latest
# The plugin to push must carry the registry's name, and docker plugin has
# no tag command: create it under that name on another daemon (the same
# directory twice on one daemon fails: "content sha256:...: already exists").
check "docker plugin create $REF (on the overlay2 dockerd)" dk ov plugin create "$REF" "$MANAGED_DIR" > /dev/null
MANAGED_EXTRA_IDS="$(managed_id ov "$REF")"
check "docker plugin push $REF" dk ov plugin push "$REF" > /dev/null
# An image for the fresh daemon, from the same registry.
dk ov tag e2e/base:latest "$REGISTRY_ADDR/e2e/base:latest"
check "docker push of a test image (from overlay2)" dk ov push -q "$REGISTRY_ADDR/e2e/base:latest" > /dev/null
phase "registry up, plugin push, image push"

dockerd_start in vfs || die "cannot start the fresh dockerd"
# What `docker plugin install` asks the user to grant: CAP_SYS_ADMIN, nothing else.
privileges ()
{
  curl -sf --unix-socket "${DAEMON_SOCK[in]}" "http://d/plugins/privileges?remote=$REF" |
    python3 -c 'import json, sys; print(" ".join("%s=%s" % (p["Name"], ",".join(p["Value"])) for p in json.load(sys.stdin)))'
}
check "install asks for exactly capabilities=CAP_SYS_ADMIN" test "$(privileges)" = "capabilities=CAP_SYS_ADMIN"
check "docker plugin install --alias $N $REF" \
  dk in plugin install --grant-all-permissions --alias "$N" "$REF" > /dev/null
managed_set_plugin in "$N" || die "installed plugin not found as $N"
check "the installed plugin is enabled" test "$(dk in plugin inspect -f '{{.Enabled}}' "$N")" = true
phase "plugin install"
dockerd_stop in
dockerd_start in plugin || die "the fresh dockerd does not start on the installed plugin"
phase "fresh dockerd restart on the installed plugin"
check "fresh dockerd runs on driver $N" driver_is in "$N"
check "docker pull from the registry onto the plugin" dk in pull -q "$REGISTRY_ADDR/e2e/base:latest" > /dev/null
dk in tag "$REGISTRY_ADDR/e2e/base:latest" e2e/base:latest
check "docker run on the installed plugin" test "$(run_out in | tr '\n' ' ')" = "hello /bin/sh "
check "Home of the installed plugin is under its propagated mount" \
  test -d "$(managed_driver_home in)/diff" -a "$(find "$(managed_driver_home in)/diff" -mindepth 1 -maxdepth 1 | wc -l)" -gt 0
phase "pull and run on the installed plugin"

# docker plugin upgrade replaces the rootfs and keeps the propagated mount.
upgrade ()
{
  dk in plugin disable -f "$N" > /dev/null &&
    dk in plugin upgrade --grant-all-permissions "$N" "$REF" > /dev/null &&
    dk in plugin enable "$N" > /dev/null
}
check "docker plugin upgrade (disable -f, upgrade, enable)" upgrade
dockerd_stop in
dockerd_start in plugin || die "the fresh dockerd does not start after the upgrade"
check "after the upgrade: the image is there and runs" test "$(run_out in | tr '\n' ' ')" = "hello /bin/sh "
phase "plugin upgrade"

# ------------------------------------------------------------ 5. least privilege
# The same plugin without CAP_SYS_ADMIN (its only added capability) must not
# work: no mounts, no trusted.overlay.* xattrs.
NOCAP=$N-nocap
nocap_fails ()
{
  local dir=$E2E_WORK/nocap-dir out
  cp -a "$MANAGED_DIR" "$dir" || return 1
  python3 - "$dir/config.json" <<'PY' || return 1
import json, sys
p = sys.argv[1]
c = json.load(open(p))
assert c["linux"]["capabilities"] == ["CAP_SYS_ADMIN"], c["linux"]
c["linux"]["capabilities"] = []
json.dump(c, open(p, "w"))
PY
  dockerd_start nc vfs || return 1
  dk nc plugin create "$NOCAP" "$dir" > /dev/null && dk nc plugin enable "$NOCAP" > /dev/null || return 1
  MANAGED_EXTRA_IDS="$MANAGED_EXTRA_IDS $(managed_id nc "$NOCAP")"
  dockerd_stop nc
  if ! GR_PLUGIN_NAME=$NOCAP dockerd_start nc plugin 2> /dev/null; then
    log "without CAP_SYS_ADMIN dockerd does not start on the plugin"
    return 0
  fi
  dk nc load -q -i "$(image_tar base)" > /dev/null 2>&1
  if out=$(dk nc run --rm --network none e2e/base:latest true 2>&1); then
    log "without CAP_SYS_ADMIN a container still ran"
    return 1
  fi
  log "without CAP_SYS_ADMIN: $out"
}
check "without CAP_SYS_ADMIN the plugin cannot run containers" nocap_fails
dockerd_stop nc
phase "least-privilege check"

log "time: total $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, $E2E_CHECKS checks"
e2e_finish
