# Shared helpers for the end-to-end tests: private dockerds, the plugin,
# a private registry, test images, listings.  Source it from bash.
#
# Environment:
#   GR_BUILDDIR      build dir holding plugin/aufs-graphdriver (default: ../../_build)
#   GR_E2E_CACHE     cache for built images and the debootstrap rootfs
#                    (default /var/cache/graphroot-e2e)
#   GR_PLUGIN_NAME   plugin (and driver) name; default aufs-graphdriver-e2e<pid>
#                    so that two runs never share a socket
#   GR_E2E_SUBJECT   driver of the daemon under test: "plugin" (default), or a
#                    built-in one (vfs, overlay2) to check the harness itself
#   GR_E2E_KEEP=1    keep the work dir after the run
#   GR_E2E_DEBUG=1   set -x
#
# Nothing here touches the system dockerd: every daemon has its own
# data-root, exec-root, socket, pidfile and config file, and is stopped by pid.

set -u
set -o pipefail
[ -n "${GR_E2E_DEBUG:-}" ] && set -x

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_SRCDIR=$(cd "$E2E_DIR/../.." && pwd)
GR_BUILDDIR=${GR_BUILDDIR:-$TOP_SRCDIR/_build}
GR_E2E_CACHE=${GR_E2E_CACHE:-/var/cache/graphroot-e2e}
GR_PLUGIN_NAME=${GR_PLUGIN_NAME:-aufs-graphdriver-e2e$$}
PLUGIN_BIN=${PLUGIN_BIN:-$GR_BUILDDIR/plugin/aufs-graphdriver}
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
export DOCKER_BUILDKIT=0 DOCKER_CLI_EXPERIMENTAL=enabled
export LC_ALL=C.UTF-8
# The client must not read a user config or a context.
export DOCKER_CONFIG=${DOCKER_CONFIG_DIR:-}

E2E_WORK=""
E2E_FAILED=0
declare -A DAEMON_PID DAEMON_SOCK DAEMON_DIR DAEMON_DRIVER
PLUGIN_PID=""
PLUGIN_SOCK=""
REGISTRY_PID=""
REGISTRY_ADDR=""

log () { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail () { log "FAIL: $*"; E2E_FAILED=1; }
die () { log "FATAL: $*"; E2E_FAILED=1; exit 1; }

require_root ()
{
  if [ "$(id -u)" != 0 ]; then
    log "skip: needs root"
    exit 77
  fi
}

# e2e_init NAME: a private work dir, cleaned up on exit.
e2e_init ()
{
  require_root
  mkdir -p "$GR_E2E_CACHE"
  E2E_WORK=$(mktemp -d "/tmp/gr-e2e-${1:-x}.XXXXXX")
  chmod 0711 "$E2E_WORK"
  export DOCKER_CONFIG=$E2E_WORK/client
  mkdir -p "$DOCKER_CONFIG"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Unmount everything at or below $1, deepest first.
umount_below ()
{
  local root=$1 m
  [ -n "$root" ] || return 0
  for m in $(awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

# The mount points below $1 (one a line).
mounts_below ()
{
  awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo
}

e2e_cleanup ()
{
  local rc=$? n
  trap - EXIT
  [ $rc -ne 0 ] && E2E_FAILED=1
  if [ "$E2E_FAILED" != 0 ] && [ -n "$E2E_WORK" ]; then
    for n in "${!DAEMON_DIR[@]}"; do
      log "--- last lines of dockerd $n log ---"
      tail -n 40 "${DAEMON_DIR[$n]}/dockerd.log" >&2 2>/dev/null || true
    done
    if [ -f "$E2E_WORK/plugin.log" ]; then
      log "--- last lines of plugin log ---"
      tail -n 60 "$E2E_WORK/plugin.log" >&2 || true
    fi
  fi
  for n in "${!DAEMON_PID[@]}"; do
    dockerd_stop "$n" || true
  done
  plugin_stop || true
  registry_stop || true
  if [ -n "$E2E_WORK" ]; then
    umount_below "$E2E_WORK"
    if [ -n "${GR_E2E_KEEP:-}" ] || { [ "$E2E_FAILED" != 0 ] && [ -n "${GR_E2E_KEEP_FAILED:-}" ]; }; then
      log "keeping $E2E_WORK"
    else
      rm -rf "$E2E_WORK" 2>/dev/null || { sleep 1; umount_below "$E2E_WORK"; rm -rf "$E2E_WORK" || true; }
    fi
  fi
  exit $rc
}

# wait_for SECONDS CMD...: poll until CMD succeeds.
wait_for ()
{
  local t=$1 i
  shift
  for ((i = 0; i < t * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# pid_wait PID SECONDS: wait for a process (not our child necessarily) to exit.
pid_wait ()
{
  local pid=$1 t=$2 i
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- dockerd

# dockerd_start NAME DRIVER [extra dockerd args]: DRIVER is overlay2, vfs or
# "plugin" (the plugin started by plugin_start).
dockerd_start ()
{
  local name=$1 driver=$2 dir
  shift 2
  dir=$E2E_WORK/$name
  mkdir -p "$dir/data" "$dir/exec"
  [ -f "$dir/daemon.json" ] || echo '{}' > "$dir/daemon.json"
  local args=(--data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock"
    --pidfile "$dir/dockerd.pid" --config-file "$dir/daemon.json"
    --iptables=false --ip-masq=false --bridge=none --userland-proxy=false)
  if [ "$driver" = plugin ]; then
    args+=(--experimental -s "$GR_PLUGIN_NAME")
  else
    args+=(-s "$driver")
  fi
  DAEMON_SOCK[$name]=$dir/docker.sock
  DAEMON_DIR[$name]=$dir
  DAEMON_DRIVER[$name]=$driver
  log "starting dockerd $name ($driver)"
  # No pull ever leaves this machine: only the loopback registry is reachable.
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
    "$DOCKERD" "${args[@]}" "$@" >> "$dir/dockerd.log" 2>&1 &
  DAEMON_PID[$name]=$!
  local i
  for ((i = 0; i < 900; i++)); do
    if ! kill -0 "${DAEMON_PID[$name]}" 2>/dev/null; then
      log "dockerd $name exited during start"
      tail -n 30 "$dir/dockerd.log" >&2
      unset "DAEMON_PID[$name]"
      return 1
    fi
    dk "$name" info >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! dk "$name" info >/dev/null 2>&1; then
    log "dockerd $name did not answer within 90 s"
    return 1
  fi
  local got
  got=$(dk "$name" info --format '{{.Driver}}')
  local want=$driver
  [ "$driver" = plugin ] && want=$GR_PLUGIN_NAME
  if [ "$got" != "$want" ]; then
    log "dockerd $name runs driver '$got', wanted '$want'"
    return 1
  fi
}

# dockerd_stop NAME: SIGTERM by pid, wait, SIGKILL after 60 s.
dockerd_stop ()
{
  local name=$1 pid
  pid=${DAEMON_PID[$name]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! pid_wait "$pid" 60; then
    log "dockerd $name did not stop in 60 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    pid_wait "$pid" 10 || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "DAEMON_PID[$name]"
  # Its containerd and shims go away with it; leftover mounts of this daemon:
  umount_below "${DAEMON_DIR[$name]}/exec"
  return 0
}

# dockerd_restart NAME: stop and start again with the same driver.
dockerd_restart ()
{
  local name=$1
  dockerd_stop "$name"
  dockerd_start "$name" "${DAEMON_DRIVER[$name]}"
}

# dk NAME ARGS...: the docker client for daemon NAME.
# `run` and `create` never pull: a missing image is an error, not a download.
dk ()
{
  local name=$1
  shift
  case "${1:-}" in
    run | create) set -- "$1" --pull never "${@:2}" ;;
  esac
  "$DOCKER" -H "unix://${DAEMON_SOCK[$name]}" "$@"
}

# The driver's home dir of daemon NAME (<data-root>/<driver name>).
driver_home ()
{
  local name=$1 d=${DAEMON_DRIVER[$1]}
  [ "$d" = plugin ] && d=$GR_PLUGIN_NAME
  echo "${DAEMON_DIR[$name]}/data/$d"
}

# ---------------------------------------------------------------- plugin

# plugin_start [extra args]: legacy socket mode at /run/docker/plugins/NAME.sock.
plugin_start ()
{
  [ -x "$PLUGIN_BIN" ] || die "plugin binary $PLUGIN_BIN missing (set GR_BUILDDIR)"
  mkdir -p /run/docker/plugins
  PLUGIN_SOCK=/run/docker/plugins/$GR_PLUGIN_NAME.sock
  if [ -S "$PLUGIN_SOCK" ] && [ -z "$PLUGIN_PID" ]; then
    if curl -s --max-time 2 --unix-socket "$PLUGIN_SOCK" -X POST http://p/Plugin.Activate >/dev/null 2>&1; then
      die "$PLUGIN_SOCK is in use by another process"
    fi
    rm -f "$PLUGIN_SOCK"
  fi
  log "starting plugin $GR_PLUGIN_NAME"
  local sockarg=(--socket "$PLUGIN_SOCK")
  # GR_PLUGIN_DEFAULT_SOCKET=1: rely on the built-in default path
  [ -n "${GR_PLUGIN_DEFAULT_SOCKET:-}" ] && sockarg=()
  "$PLUGIN_BIN" "${sockarg[@]}" --log-level "${GR_PLUGIN_LOG_LEVEL:-debug}" "$@" \
    >> "$E2E_WORK/plugin.log" 2>&1 &
  PLUGIN_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$PLUGIN_PID" 2>/dev/null; then
      log "plugin exited during start"
      tail -n 20 "$E2E_WORK/plugin.log" >&2
      PLUGIN_PID=""
      return 1
    fi
    [ -S "$PLUGIN_SOCK" ] && curl -sf --max-time 5 --unix-socket "$PLUGIN_SOCK" \
      -X POST http://plugin.moby.localhost/Plugin.Activate 2>/dev/null | grep -q GraphDriver && return 0
    sleep 0.1
  done
  log "plugin did not answer Plugin.Activate on $PLUGIN_SOCK within 10 s"
  return 1
}

plugin_stop ()
{
  local pid=$PLUGIN_PID
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! pid_wait "$pid" 30; then
    log "plugin did not stop in 30 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  PLUGIN_PID=""
  rm -f "$PLUGIN_SOCK"
  return 0
}

# plugin_kill: a crash: SIGKILL, no cleanup (its mounts and socket stay).
plugin_kill ()
{
  local pid=$PLUGIN_PID
  [ -n "$pid" ] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  PLUGIN_PID=""
}

# start_subject [NAME]: the daemon under test (default name "pl"): the plugin
# and a dockerd on it, or a built-in driver if GR_E2E_SUBJECT says so.
GR_E2E_SUBJECT=${GR_E2E_SUBJECT:-plugin}
start_subject ()
{
  local name=${1:-pl}
  if [ "$GR_E2E_SUBJECT" = plugin ]; then
    plugin_start || return 1
  fi
  dockerd_start "$name" "$GR_E2E_SUBJECT"
}

# restart_subject [NAME]: stop dockerd, then the plugin; start both again.
restart_subject ()
{
  local name=${1:-pl}
  dockerd_stop "$name"
  if [ "$GR_E2E_SUBJECT" = plugin ]; then
    plugin_stop
    plugin_start || return 1
  fi
  dockerd_start "$name" "$GR_E2E_SUBJECT"
}

# start_pair [IMAGE...]: "ov" on overlay2 and "pl" under test, with the test
# images loaded (all of them unless named).
start_pair ()
{
  dockerd_start ov overlay2 || die "cannot start the overlay2 dockerd"
  start_subject pl || die "cannot start the dockerd under test ($GR_E2E_SUBJECT)"
  if [ $# -gt 0 ]; then
    E2E_IMAGES="$*" ensure_images ov ov pl || die "cannot load the test images"
  else
    ensure_images ov ov pl || die "cannot load the test images"
  fi
}

# ---------------------------------------------------------------- registry

free_port ()
{
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# registry_start [EXTRA-YAML]: a private docker-registry on 127.0.0.1 (a
# fresh one: any earlier one is stopped). EXTRA-YAML goes after http.addr
# (an auth section, or "  tls:" lines under http).
registry_start ()
{
  local dir=$E2E_WORK/registry port
  registry_stop
  rm -rf "$dir"
  mkdir -p "$dir/root"
  port=$(free_port)
  cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
${1:-}
EOF
  docker-registry serve "$dir/config.yml" >> "$E2E_WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY_ADDR=127.0.0.1:$port
  # any answer (401 behind auth too) means it is up; with tls, over https
  wait_for 20 curl -sk -o /dev/null "http://$REGISTRY_ADDR/v2/" \
    || wait_for 5 curl -sk -o /dev/null "https://$REGISTRY_ADDR/v2/" \
    || { log "registry did not start"; return 1; }
}

registry_stop ()
{
  [ -n "$REGISTRY_PID" ] || return 0
  kill -TERM "$REGISTRY_PID" 2>/dev/null || true
  pid_wait "$REGISTRY_PID" 10 || kill -KILL "$REGISTRY_PID" 2>/dev/null || true
  wait "$REGISTRY_PID" 2>/dev/null || true
  REGISTRY_PID=""
}

# ---------------------------------------------------------------- checks

# listing of a tar stream on stdin (see tarlist.py)
tarlist () { python3 "$E2E_DIR/tarlist.py" "$@"; }

# export_list DAEMON IMAGE [tarlist options]: sorted listing of the image's
# root as docker export sees it.
export_list ()
{
  local d=$1 img=$2 c
  shift 2
  c=$(dk "$d" create --network none "$img" /bin/true) || return 1
  dk "$d" export "$c" | tarlist --export "$@"
  local rc=$?
  dk "$d" rm -f "$c" >/dev/null
  return $rc
}

# same_file A B WHAT: compare two files, print a diff on mismatch.
same_file ()
{
  if cmp -s "$1" "$2"; then
    return 0
  fi
  fail "$3 differ:"
  diff -u "$1" "$2" | head -n 40 >&2
  return 1
}

# layer_digests DAEMON IMAGE: the sha256 of each layer.tar of `docker save`, base first,
# then the config digest.
layer_digests ()
{
  local d=$1 img=$2 t
  t=$(mktemp -d "$E2E_WORK/save.XXXXXX")
  dk "$d" save "$img" | tar -C "$t" -xf - || { rm -rf "$t"; return 1; }
  python3 - "$t" <<'EOF'
import hashlib, json, sys, os
t = sys.argv[1]
m = json.load(open(os.path.join(t, "manifest.json")))[0]
def h(p):
    d = hashlib.sha256()
    with open(os.path.join(t, p), "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            d.update(b)
    return d.hexdigest()
for l in m["Layers"]:
    print("layer", h(l))
print("config", h(m["Config"]))
EOF
  local rc=$?
  rm -rf "$t"
  return $rc
}

# layer_mounts DAEMON: mounts below the daemon's data root other than the
# root itself and the driver home (dockerd and drivers may bind those).
layer_mounts ()
{
  local root=${DAEMON_DIR[$1]}/data home
  home=$(driver_home "$1")
  mounts_below "$root" | grep -v -x -F -e "$root" -e "$home" -e "$root/plugins"
}

# assert_no_mounts DAEMON: none left (dockerd may release a removed
# container's mount a moment after `docker rm` returns: wait up to 10 s).
assert_no_mounts ()
{
  local m i
  for ((i = 0; i < 100; i++)); do
    [ -z "$(layer_mounts "$1")" ] && return 0
    sleep 0.1
  done
  m=$(layer_mounts "$1")
  if [ -n "$m" ]; then
    fail "mounts left under the $1 data root: $m"
    return 1
  fi
}

# image_ok DAEMON IMAGE: loaded there?
image_ok () { dk "$1" image inspect "$2" >/dev/null 2>&1; }

# ---------------------------------------------------------------- images

# The test images, built once and cached as `docker save` tarballs under
# $GR_E2E_CACHE/images-<hash of their recipes>, then loaded into every daemon:
#   base     busybox-static, one layer (mktar.py)
#   special  base + 3 handmade layers: every file type, whiteouts, opaque dirs
#   deep     125 layers
#   built    `docker build` on base (tests/e2e/images/built)
#   debian   debootstrap --variant=minbase bookworm (docker import) + 1 built layer
E2E_IMAGES="base special deep built debian"

# The key is computed once, when lib.sh is sourced, so that a recipe edited
# during a run does not switch the run to another dir half way.
E2E_IMAGES_DIR=$GR_E2E_CACHE/images-$(cat "$E2E_DIR/mktar.py" "$E2E_DIR"/images/*/* /bin/busybox 2>/dev/null | sha256sum | cut -c1-16)
images_dir () { echo "$E2E_IMAGES_DIR"; }

# The debootstrap rootfs as a tarball (cached: one download per machine).
debian_rootfs_tar ()
{
  local out=$GR_E2E_CACHE/debian-bookworm-minbase.tar
  if [ -s "$out" ]; then
    echo "$out"
    return 0
  fi
  local mirror="" dir
  # The mirror apt already uses on this machine, else debootstrap's default.
  mirror=$(sed -n 's/^URIs: *\([^ ]*debian\/*\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
  dir=$(mktemp -d "$GR_E2E_CACHE/debootstrap.XXXXXX")
  log "debootstrap --variant=minbase bookworm ${mirror:-(default mirror)} (once; cached in $out)"
  if ! debootstrap --variant=minbase bookworm "$dir" $mirror > "$GR_E2E_CACHE/debootstrap.log" 2>&1; then
    tail -n 20 "$GR_E2E_CACHE/debootstrap.log" >&2
    umount_below "$dir"
    rm -rf "$dir"
    return 1
  fi
  umount_below "$dir"
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*_* 2>/dev/null
  tar --numeric-owner --xattrs --xattrs-include='*' -C "$dir" -cf "$out.tmp" . || { rm -rf "$dir" "$out.tmp"; return 1; }
  rm -rf "$dir"
  mv "$out.tmp" "$out"
  echo "$out"
}

# build_images DAEMON: make any missing image tarball, using DAEMON (overlay2).
# Runs may share the cache: building is serialised by a lock and every
# tarball appears by rename.
build_images ()
{
  local d=$1 dir t rc
  dir=$(images_dir)
  mkdir -p "$dir"
  touch "$dir"
  (
    flock -w 1800 9 || { log "cannot lock $GR_E2E_CACHE/.lock"; exit 1; }
    # tarballs of old recipes, unused for two days
    find "$GR_E2E_CACHE" -maxdepth 1 -name 'images-*' ! -path "$dir" -mtime +2 -exec rm -rf {} + 2>/dev/null
    build_images_locked "$d"
  ) 9> "$GR_E2E_CACHE/.lock"
}

build_images_locked ()
{
  local d=$1 dir t
  dir=$(images_dir)
  for t in base special deep; do
    [ -s "$dir/$t.tar" ] && continue
    log "making image $t"
    python3 "$E2E_DIR/mktar.py" image "$dir/$t.tar.tmp$$" "$t" e2e/$t:latest && mv "$dir/$t.tar.tmp$$" "$dir/$t.tar" || return 1
  done
  if [ ! -s "$dir/built.tar" ]; then
    log "building image built on $d"
    dk "$d" load -q -i "$dir/base.tar" >/dev/null || return 1
    dk "$d" build -q --network none -t e2e/built "$E2E_DIR/images/built" >/dev/null || return 1
    dk "$d" save -o "$dir/built.tar.tmp$$" e2e/built && mv "$dir/built.tar.tmp$$" "$dir/built.tar" || return 1
  fi
  if [ ! -s "$dir/debian.tar" ] && [ -z "${GR_E2E_NO_DEBIAN:-}" ]; then
    local rootfs
    rootfs=$(debian_rootfs_tar) || return 1
    log "building image debian on $d"
    dk "$d" import - e2e/debian-base < "$rootfs" >/dev/null || return 1
    dk "$d" build -q --network none -t e2e/debian "$E2E_DIR/images/debian" >/dev/null || return 1
    dk "$d" save -o "$dir/debian.tar.tmp$$" e2e/debian-base e2e/debian \
      && mv "$dir/debian.tar.tmp$$" "$dir/debian.tar" || return 1
  fi
}

# ensure_images BUILD_DAEMON [DAEMON...]: build what is missing on BUILD_DAEMON
# (an overlay2 one), then load every image into each DAEMON given (the build
# daemon included if named again).
ensure_images ()
{
  local b=$1 d t dir
  shift
  build_images "$b" || { fail "building the test images"; return 1; }
  dir=$(images_dir)
  for d in "$@"; do
    for t in $E2E_IMAGES; do
      [ -s "$dir/$t.tar" ] || continue
      log "docker load $t into $d"
      dk "$d" load -q -i "$dir/$t.tar" >/dev/null || { fail "docker load $t into $d"; return 1; }
    done
  done
}

# image_tar NAME: the cached tarball of a test image.
image_tar () { echo "$(images_dir)/$1.tar"; }
image_ok_tar () { [ -s "$(image_tar "$1")" ] || [ -z "${GR_E2E_NO_DEBIAN:-}" ]; }

# For a test that needs just the result of a check: pass/fail counters.
E2E_CHECKS=0
check ()
{
  local what=$1
  shift
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if "$@"; then
    log "ok: $what"
  else
    fail "$what"
  fi
}

# Exit with the test's verdict.
e2e_finish ()
{
  if [ "$E2E_FAILED" != 0 ]; then
    exit 1
  fi
  exit 0
}

# GR_E2E_SUBJECT=managed (added by helper "managed"): the daemon under test
# runs on the managed plugin (docker plugin create + enable, dockerd -s), see
# tests/e2e/managed-lib.sh, which redefines start_subject, restart_subject,
# driver_home, layer_mounts and e2e_init for it.
if [ "$GR_E2E_SUBJECT" = managed ]; then
  . "$E2E_DIR/managed-lib.sh"
fi
