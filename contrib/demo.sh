#!/bin/bash
# The demo, on a fresh Debian 12 machine as root: install what is needed,
# build, start the aufs-graphdriver plugin (legacy socket mode) and a private
# dockerd on it, build a busybox image locally, run a container from it,
# then stop everything. Touches no system dockerd: the daemon has its own
# data root, exec root and socket under a temp dir, removed at the end.
#
#   GR_BUILDDIR   build dir (default: <top>/_build)
#   GR_DEMO_KEEP=1  leave the temp dir (data root, logs) behind
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export GR_BUILDDIR=${GR_BUILDDIR:-$top/_build}

"$top/contrib/setup.sh"

echo "=== build ($GR_BUILDDIR)"
cd "$top"
[ -x configure ] || autoreconf -fi
mkdir -p "$GR_BUILDDIR"
(cd "$GR_BUILDDIR" && { [ -f Makefile ] || "$top/configure" > configure.out; } && make -j"$(nproc)" > make.out) ||
  { tail -n 30 "$GR_BUILDDIR/make.out" 2>/dev/null; exit 1; }

# The real plugin name unless another plugin already owns its socket.
if [ -S /run/docker/plugins/aufs-graphdriver.sock ]; then
  export GR_PLUGIN_NAME=aufs-graphdriver-demo$$
else
  export GR_PLUGIN_NAME=aufs-graphdriver
fi
export GR_PLUGIN_LOG_LEVEL=info
[ -n "${GR_DEMO_KEEP:-}" ] && export GR_E2E_KEEP=1
set +eu
# shellcheck source=../tests/e2e/lib.sh
. "$top/tests/e2e/lib.sh"
e2e_init demo

echo "=== plugin $GR_PLUGIN_NAME on /run/docker/plugins/$GR_PLUGIN_NAME.sock, private dockerd on it"
start_subject demo || die "could not start the plugin and dockerd (logs above)"
dk demo info --format 'dockerd {{.ServerVersion}}, storage driver: {{.Driver}}, root {{.DockerRootDir}}'

echo "=== docker import: a busybox-static root file system"
python3 "$E2E_DIR/mktar.py" layer "$E2E_WORK/busybox.tar" || die "mktar"
dk demo import "$E2E_WORK/busybox.tar" demo/busybox:base > /dev/null || die "docker import"

echo "=== docker build"
mkdir -p "$E2E_WORK/ctx"
cat > "$E2E_WORK/ctx/Dockerfile" <<'DOCKERFILE'
FROM demo/busybox:base
RUN mkdir -p /srv && echo "Hello from a container on aufs-graphdriver" > /srv/greeting && rm /bin/vi
CMD ["sh", "-c", "cat /srv/greeting; echo \"its root: $(grep ' / ' /proc/mounts | cut -d' ' -f1,3)\"; uname -sr"]
DOCKERFILE
dk demo build -t demo/hello "$E2E_WORK/ctx" || die "docker build"

echo "=== docker run --rm demo/hello"
dk demo run --rm --network none demo/hello || die "docker run"

echo "=== the aufs layout under $(driver_home demo)"
ls "$(driver_home demo)"
echo "layers: $(ls "$(driver_home demo)/layers" | wc -l)"

echo "=== stopping dockerd and the plugin"
dockerd_stop demo
plugin_stop
echo "=== demo done"
