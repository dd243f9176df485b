# Helpers of the pull tests (test-pull*.sh), on top of lib.sh.
#
#   IMGMIGRATE   the imgmigrate binary (default $GR_BUILDDIR/migrate/imgmigrate)

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMGMIGRATE=${IMGMIGRATE:-$GR_BUILDDIR/migrate/imgmigrate}
FAKE_PID=""
FAKE_ADDR=""

pull_exit ()
{
  local rc=$?
  fake_stop
  (exit $rc)
  e2e_cleanup
}

pull_init ()
{
  e2e_init "$1"
  [ -x "$IMGMIGRATE" ] || die "no imgmigrate at $IMGMIGRATE (set GR_BUILDDIR or IMGMIGRATE)"
  trap pull_exit EXIT
}

# make_image KIND: a `docker save` tarball of a mktar.py image (cached in the work dir).
make_image ()
{
  local out=$E2E_WORK/img-$1.tar
  [ -s "$out" ] || python3 "$E2E_DIR/mktar.py" image "$out" "$1" >&2 || return 1
  echo "$out"
}

# push KIND REPO:TAG [skopeo args]: push a mktar image to the private registry.
push ()
{
  local tar
  tar=$(make_image "$1") || return 1
  skopeo copy -q --dest-tls-verify=false "${@:3}" "docker-archive:$tar" "docker://$REGISTRY_ADDR/$2" >&2
}

# fake_start IMAGE.tar MODE: the hostile registry of fake-registry.py.
fake_start ()
{
  local port
  fake_stop
  port=$(free_port)
  : > "$E2E_WORK/fake.log"
  python3 "$E2E_DIR/fake-registry.py" "$port" "$1" "$2" "$E2E_WORK/fake.log" 2>> "$E2E_WORK/fake.err" &
  FAKE_PID=$!
  FAKE_ADDR=127.0.0.1:$port
  wait_for 10 curl -s -o /dev/null "http://$FAKE_ADDR/v2/" || { log "fake registry did not start"; return 1; }
}

fake_stop ()
{
  [ -n "$FAKE_PID" ] || return 0
  kill "$FAKE_PID" 2>/dev/null || true
  wait "$FAKE_PID" 2>/dev/null || true
  FAKE_PID=""
}

# imgm ARGS...: run imgmigrate, output in $E2E_WORK/imgm.out (stdout+stderr).
imgm ()
{
  "$IMGMIGRATE" "$@" > "$E2E_WORK/imgm.out" 2>&1
}

# The registry's config digest and diff_ids of REPO:TAG (manifest v2).
registry_config ()
{
  local addr=$1 repo=$2 tag=$3 cfg
  cfg=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$addr/v2/$repo/manifests/$tag" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])') || return 1
  curl -sf "http://$addr/v2/$repo/blobs/$cfg"
}

# saved_diff_ids DAEMON IMAGE: sha256 of each layer.tar of `docker save`.
saved_diff_ids ()
{
  local d=$1 img=$2 dir
  dir=$(mktemp -d "$E2E_WORK/save.XXXXXX")
  dk "$d" save -o "$dir/s.tar" "$img" || return 1
  python3 - "$dir/s.tar" <<'EOF'
import hashlib, json, sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    m = json.load(tf.extractfile("manifest.json"))[0]
    for l in m["Layers"]:
        print("sha256:" + hashlib.sha256(tf.extractfile(l).read()).hexdigest())
EOF
  rm -rf "$dir"
}

# Nothing registered under repository NAME in ROOT (driver DRV): no
# repositories.json entry, and no image config in imagedb.
nothing_registered ()
{
  local root=$1 drv=$2 name=$3 n
  if [ -f "$root/image/$drv/repositories.json" ] \
    && grep -q "\"$name\"" "$root/image/$drv/repositories.json"; then
    log "repositories.json names $name"
    return 1
  fi
  n=$(find "$root/image/$drv/imagedb/content/sha256" -type f 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { log "$n image configs in imagedb"; return 1; }
}

# `docker images --digests` line of REPO on DAEMON: "repo tag digest id".
images_line ()
{
  dk "$1" images --digests --no-trunc --format '{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}' "$2" | sort
}

# check_images_match REF DAEMON PREFIX REPO...: for each REPO, DAEMON's
# `docker images --digests` line equals REF's (a `docker pull` there).
check_images_match ()
{
  local ref=$1 d=$2 prefix=$3 repo want got
  shift 3
  for repo in "$@"; do
    want=$(images_line "$ref" "$repo")
    got=$(images_line "$d" "$repo")
    log "$ref: $want"
    log "$d: $got"
    check "${prefix}docker images --digests matches docker pull for $repo" test -n "$got" -a "$got" = "$want"
  done
}
