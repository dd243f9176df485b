# The aufs-graphdriver as a managed (v2) Docker plugin in the private dockerds
# of lib.sh.  Source it after lib.sh.  With GR_E2E_SUBJECT=managed it also
# switches lib.sh's subject (start_subject, restart_subject, driver_home,
# assert_no_mounts) to the managed plugin, so the legacy-socket tests run
# unchanged against it.
#
# How dockerd 20.10 runs a managed plugin (facts the helpers rely on):
#   - config and rootfs: <data-root>/plugins/<id>/{config.json,rootfs}
#   - the propagated mount: <data-root>/plugins/<id>/propagated-mount on the
#     host, /data in the plugin; Home = /data/<name given to -s>
#   - the socket: /run/docker/plugins/<id>/aufs.sock on the host, whatever the
#     daemon's --exec-root (dockerd hardcodes /run/docker/plugins)
#   - stdout/stderr of the plugin go to dockerd's log, "plugin=<id>"
#   - dockerd stops its plugins (SIGTERM, 10 s, SIGKILL) and unmounts
#     <data-root>/plugins recursively when it stops.

[ -n "${MANAGED_LIB_LOADED:-}" ] && return 0
MANAGED_LIB_LOADED=1

# The driver name the daemons run with (-s); dockerd resolves it to NAME:latest.
MANAGED_NAME=${GR_MANAGED_NAME:-aufs-graphdriver}
MANAGED_CONFIG=${GR_MANAGED_CONFIG:-$TOP_SRCDIR/contrib/plugin/config.json}
MANAGED_BUILD=$TOP_SRCDIR/contrib/plugin/build-rootfs.sh
MANAGED_DIR=""
declare -A MANAGED_ID # daemon -> id of the plugin it runs on

# managed_build_dir: config.json + rootfs/ in the work dir, once per run:
# `make plugin` in GR_BUILDDIR when it is a build dir (the target users run;
# PLUGIN_DIR points it at our work dir, as tests run in parallel), else
# build-rootfs.sh on $PLUGIN_BIN.  A private config (GR_MANAGED_CONFIG)
# always goes the second way.
managed_build_dir ()
{
  [ -n "$MANAGED_DIR" ] && [ -d "$MANAGED_DIR/rootfs" ] && return 0
  [ -x "$PLUGIN_BIN" ] || die "plugin binary $PLUGIN_BIN missing (set GR_BUILDDIR)"
  if [ -f "$GR_BUILDDIR/Makefile" ] && [ "$MANAGED_CONFIG" = "$TOP_SRCDIR/contrib/plugin/config.json" ] &&
    [ "$PLUGIN_BIN" = "$GR_BUILDDIR/plugin/aufs-graphdriver" ]; then
    MANAGED_DIR=$E2E_WORK/plugin-dir
    log "make plugin in $GR_BUILDDIR (PLUGIN_DIR=$MANAGED_DIR)"
    make -s -C "$GR_BUILDDIR" plugin PLUGIN_DIR="$MANAGED_DIR" >&2 || return 1
    [ -f "$MANAGED_DIR/config.json" ] && [ -x "$MANAGED_DIR/rootfs/aufs-graphdriver" ] || return 1
    return 0
  fi
  MANAGED_DIR=$E2E_WORK/plugin-dir
  "$MANAGED_BUILD" "$PLUGIN_BIN" "$MANAGED_CONFIG" "$MANAGED_DIR" >&2 || return 1
}

# managed_id DAEMON NAME: the plugin's full ID.
managed_id () { dk "$1" plugin inspect -f '{{.Id}}' "$2"; }

# managed_propagated DAEMON: the host side of the plugin's /data.
managed_propagated ()
{
  echo "${DAEMON_DIR[$1]}/data/plugins/${MANAGED_ID[$1]}/propagated-mount"
}

# managed_set_plugin DAEMON NAME: remember which plugin DAEMON runs on.
managed_set_plugin ()
{
  local id
  id=$(managed_id "$1" "$2") || return 1
  MANAGED_ID[$1]=$id
}

# managed_create DAEMON [NAME]: docker plugin create + enable on a running
# daemon (any driver), with the settings in GR_MANAGED_SET ("K=V K=V").
managed_create ()
{
  local d=$1 name=${2:-$MANAGED_NAME}
  managed_build_dir || return 1
  log "docker plugin create $name"
  dk "$d" plugin create "$name" "$MANAGED_DIR" > /dev/null || return 1
  if [ -n "${GR_MANAGED_SET:-}" ]; then
    # shellcheck disable=SC2086
    dk "$d" plugin set "$name" $GR_MANAGED_SET || return 1
  fi
  log "docker plugin enable $name"
  dk "$d" plugin enable "$name" > /dev/null || return 1
}

# managed_start DAEMON: a fresh dockerd (on vfs, which never mounts), the
# plugin created and enabled there, then dockerd restarted on it with
# --experimental -s $MANAGED_NAME.
managed_start ()
{
  local d=${1:-pl}
  dockerd_start "$d" vfs || return 1
  managed_create "$d" "$MANAGED_NAME" || return 1
  managed_set_plugin "$d" "$MANAGED_NAME" || return 1
  dockerd_stop "$d"
  dockerd_start "$d" plugin
}

# managed_driver_home DAEMON: Home as the host sees it.
managed_driver_home () { echo "$(managed_propagated "$1")/$MANAGED_NAME"; }

# Mounts below a daemon's data root, except the propagated mount itself
# (dockerd makes it an rshared bind mount while the plugin is enabled).
managed_assert_no_mounts ()
{
  local d=$1 m prop
  prop=$(managed_propagated "$d")
  m=$(mounts_below "${DAEMON_DIR[$d]}/data" | grep -v -x -F -e "$prop" -e "${DAEMON_DIR[$d]}/data" || true)
  if [ -n "$m" ]; then
    fail "mounts left under $d data root: $m"
    return 1
  fi
}

# Remove what dockerd leaves in the shared /run/docker/plugins for our plugins.
managed_cleanup ()
{
  local rc=$? d id
  trap - EXIT
  for d in "${!DAEMON_PID[@]}"; do
    dockerd_stop "$d" || true
  done
  for id in "${MANAGED_ID[@]}" ${MANAGED_EXTRA_IDS:-}; do
    [ -n "$id" ] || continue
    umount_below "/run/docker/plugins/$id"
    rm -rf "/run/docker/plugins/${id:?}"
  done
  (exit $rc)
  e2e_cleanup
}

# managed_init NAME: lib.sh's e2e_init, then our cleanup before its own.
eval "lib_$(declare -f e2e_init)"
managed_init ()
{
  lib_e2e_init "$@"
  trap managed_cleanup EXIT
}

# ---- lib.sh's per-daemon helpers, for daemons on the managed plugin
# dockerd_start NAME plugin: -s $MANAGED_NAME for a daemon with a managed
# plugin, lib.sh's $GR_PLUGIN_NAME (the legacy socket) for the others.
eval "lib_$(declare -f dockerd_start)"
dockerd_start ()
{
  if [ "${2:-}" = plugin ] && [ -n "${MANAGED_ID[$1]:-}" ]; then
    local GR_PLUGIN_NAME=$MANAGED_NAME
    lib_dockerd_start "$@"
  else
    lib_dockerd_start "$@"
  fi
}
eval "lib_$(declare -f driver_home)"
driver_home ()
{
  if [ -n "${MANAGED_ID[$1]:-}" ]; then
    managed_driver_home "$1"
  else
    lib_driver_home "$1"
  fi
}
if declare -F layer_mounts > /dev/null; then
  # The propagated mount is dockerd's own rshared bind mount, not a layer.
  eval "lib_$(declare -f layer_mounts)"
  layer_mounts ()
  {
    if [ -n "${MANAGED_ID[$1]:-}" ]; then
      lib_layer_mounts "$1" | grep -v -x -F -e "$(managed_propagated "$1")"
    else
      lib_layer_mounts "$1"
    fi
  }
else
  eval "lib_$(declare -f assert_no_mounts)"
  assert_no_mounts ()
  {
    if [ -n "${MANAGED_ID[$1]:-}" ]; then
      managed_assert_no_mounts "$1"
    else
      lib_assert_no_mounts "$1"
    fi
  }
fi

# ---- GR_E2E_SUBJECT=managed: the legacy-socket tests on the managed plugin
if [ "${GR_E2E_SUBJECT:-}" = managed ]; then
  start_subject () { managed_start "${1:-pl}"; }
  restart_subject ()
  {
    local name=${1:-pl}
    dockerd_stop "$name"
    dockerd_start "$name" plugin
  }
  # lib.sh's e2e_init installs e2e_cleanup; managed_cleanup must run first.
  e2e_init () { managed_init "$@"; }
fi
