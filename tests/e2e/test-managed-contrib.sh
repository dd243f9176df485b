#!/bin/bash
# Legacy mode as contrib/ sets it up: the plugin started with the command
# line and environment of contrib/systemd/aufs-graphdriver.service (its
# ExecStartPre, ExecStart and ExecStartPost, the binary taken from the
# build), and a private dockerd configured only by contrib/daemon.json (no
# -s or --experimental flags): it must pick the plugin and run a container.
# The unit's socket is the real /run/docker/plugins/aufs-graphdriver.sock:
# skipped (77) when something already listens there.  Root only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/managed-lib.sh"
managed_init contrib

UNIT=$TOP_SRCDIR/contrib/systemd/aufs-graphdriver.service
DAEMON_JSON=$TOP_SRCDIR/contrib/daemon.json
[ -x "$PLUGIN_BIN" ] || die "plugin binary $PLUGIN_BIN missing (set GR_BUILDDIR)"

unit_value () { sed -n "s/^$1=//p" "$UNIT" | head -n 1; }
start_pre=$(unit_value ExecStartPre)
start=$(unit_value ExecStart)
start_post=$(unit_value ExecStartPost)
envs=$(unit_value Environment)
sock=$(printf '%s\n' "$start" | sed -n 's/.*--socket \([^ ]*\).*/\1/p')
name=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["storage-driver"])' "$DAEMON_JSON")

check "the unit's socket is the one dockerd looks for ($name)" test "$sock" = "/run/docker/plugins/$name.sock"
check "daemon.json turns experimental on" \
  python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("experimental") is not True)' "$DAEMON_JSON"

if [ -S "$sock" ] && curl -s --max-time 2 --unix-socket "$sock" -X POST http://p/Plugin.Activate > /dev/null 2>&1; then
  log "skip: $sock is in use (a system aufs-graphdriver?)"
  exit 77
fi
rm -f "$sock"

# The unit's command lines, with the installed binary replaced by the built one.
cmd=${start/\/usr\/local\/bin\/aufs-graphdriver/$PLUGIN_BIN}
check "the unit's ExecStart names /usr/local/bin/aufs-graphdriver" test "$cmd" != "$start"
log "ExecStartPre: $start_pre"
# shellcheck disable=SC2086
$start_pre || die "ExecStartPre failed"
log "ExecStart ($envs): $cmd"
# shellcheck disable=SC2086
env $envs $cmd >> "$E2E_WORK/plugin.log" 2>&1 &
PLUGIN_PID=$!
PLUGIN_SOCK=$sock
log "ExecStartPost"
# systemd's quoting of this line is the shell's.
check "ExecStartPost sees the socket" eval "$start_post"
check "the plugin is ready with the unit's environment ($envs)" \
  grep -q "ready (mount method ${envs##*MOUNT_METHOD=})" "$E2E_WORK/plugin.log"

# dockerd configured by contrib/daemon.json alone.
d=$E2E_WORK/lg
mkdir -p "$d/data" "$d/exec"
cp "$DAEMON_JSON" "$d/daemon.json"
DAEMON_SOCK[lg]=$d/docker.sock
DAEMON_DIR[lg]=$d
DAEMON_DRIVER[lg]=$name
"$DOCKERD" --data-root "$d/data" --exec-root "$d/exec" -H "unix://$d/docker.sock" \
  --pidfile "$d/dockerd.pid" --config-file "$d/daemon.json" \
  --iptables=false --ip-masq=false --bridge=none --userland-proxy=false >> "$d/dockerd.log" 2>&1 &
DAEMON_PID[lg]=$!
wait_for 90 dk lg info || die "dockerd with contrib/daemon.json did not start"
check "dockerd with contrib/daemon.json runs on $name" test "$(dk lg info --format '{{.Driver}}')" = "$name"
check "Home is <data-root>/$name" test -d "$d/data/$name/diff"
# The test images are built (once, cached) with an overlay2 daemon.
dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
E2E_IMAGES=base
ensure_images ov lg || die "cannot load e2e/base"
dockerd_stop ov
run_ok () { [ "$(dk lg run --rm --network none e2e/base:latest sh -c 'echo ok')" = ok ]; }
check "docker run on the legacy plugin" run_ok
dockerd_stop lg
plugin_stop
check "after stopping: no mounts under the data root" test -z "$(layer_mounts lg)"
e2e_finish
