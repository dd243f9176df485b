#!/bin/bash
# Restarting dockerd and the plugin keeps every image and container: a
# stopped container's rw content survives, a created one still starts, images
# still run; the same after the plugin was killed (a crash) with mounts up.
. "$(dirname "$0")/lib.sh"
e2e_init restart
start_subject pl || die "cannot start the daemon under test"
dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
E2E_IMAGES="base special deep built" ensure_images ov pl || die "cannot load the test images"
dockerd_stop ov

dk pl run --name kept --network none e2e/special sh -c \
  'echo kept > /data/kept && rm /data/hello && rm -rf /data/sub && mkdir /newdir && ln /data/kept /newdir/hard' ||
  fail "docker run kept"
dk pl create --name created --network none e2e/built >/dev/null || fail "docker create"
dk pl run -d --name running --restart always --network none e2e/base sleep 600 >/dev/null || fail "docker run -d"

state ()
{
  dk pl images -a --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' | sort
  dk pl ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Image}}' | sort
  dk pl diff kept | sort
  dk pl export kept | tarlist --mtime
}
state > "$E2E_WORK/before" || fail "state before restart"

after_restart ()
{
  local what=$1
  state > "$E2E_WORK/after" || return 1
  same_file "$E2E_WORK/before" "$E2E_WORK/after" "images, containers and the kept rw layer $what" || return 1
  [ "$(dk pl cp kept:/data/kept - | tar -xOf -)" = kept ] || { log "docker cp of /data/kept"; return 1; }
  [ "$(dk pl start -a created)" = "three
copied by docker build" ] || { log "docker start -a created"; return 1; }
  [ "$(dk pl run --rm --network none e2e/deep)" = "layer 124" ] || { log "docker run e2e/deep"; return 1; }
  wait_for 30 sh -c "[ \"\$($DOCKER -H unix://${DAEMON_SOCK[pl]} inspect -f '{{.State.Running}}' running)\" = true ]" ||
    { log "the --restart always container did not come back"; return 1; }
  dk pl exec running cat /etc/passwd >/dev/null || return 1
}

restart_subject pl || die "restart"
check "dockerd and plugin restarted: everything kept" after_restart "after a restart"

if [ "$GR_E2E_SUBJECT" = plugin ]; then
  # A crash: the plugin dies while dockerd still has a container mounted.
  m_before=$(layer_mounts pl | wc -l)
  plugin_kill
  dockerd_stop pl
  plugin_start || die "plugin restart after a crash"
  dockerd_start pl plugin || die "dockerd restart after a plugin crash"
  check "after a plugin crash ($m_before mounts were up): everything kept" after_restart "after a plugin crash"
  dk pl stop -t 1 running >/dev/null
  check "after a crash and docker stop: no stale mounts" test -z "$(layer_mounts pl)"
fi
e2e_finish
