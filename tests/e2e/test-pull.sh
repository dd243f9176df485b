#!/bin/bash
# imgmigrate pull into a stopped overlay2 root, then the real dockerd on it:
# same ID and digest as `docker pull`, `docker run` works, `docker save`
# gives the registry's diffIDs, `docker pull` afterwards downloads nothing,
# a second imgmigrate pull downloads nothing, and a root whose dockerd runs
# is refused.
. "$(dirname "$0")/pull-lib.sh"

pull_init pull
registry_start || die "registry"
push special e2e/special:v1 || die "skopeo push special"
push base e2e/base:latest || die "skopeo push base"
REF=$REGISTRY_ADDR/e2e/special:v1

# --- the pull into a stopped root
ROOT=$E2E_WORK/pulled/data
mkdir -p "$ROOT"
check "imgmigrate pull exits 0" imgm pull "$REF" --root "$ROOT" --driver overlay2
cat "$E2E_WORK/imgm.out" >&2
check "plain progress names every layer as complete" \
  test "$(grep -c ': Pull complete$' "$E2E_WORK/imgm.out")" = 4
check "ends with the docker-style status line" \
  grep -qx "Status: Downloaded newer image for $REF" "$E2E_WORK/imgm.out"
check "pull by digest-less short name also works (:latest, json output)" \
  imgm pull "$REGISTRY_ADDR/e2e/base" --root "$ROOT" --driver overlay2 --format json
check "json output ends with the image ID and digest" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; d=l[-1]; assert d["status"]=="done" and d["id"].startswith("sha256:") and d["digest"].startswith("sha256:"), d' "$E2E_WORK/imgm.out"

# --- the same pulls by the real dockerd
dockerd_start ref overlay2 || die "dockerd ref"
dk ref pull -q "$REF" >/dev/null || die "docker pull on ref"
dk ref pull -q "$REGISTRY_ADDR/e2e/base" >/dev/null || die "docker pull base on ref"

# --- dockerd on our root
dockerd_start pulled overlay2 || die "dockerd on the pulled root does not start"
check_images_match ref pulled "" "$REGISTRY_ADDR/e2e/special" "$REGISTRY_ADDR/e2e/base"
check "docker run works on the pulled image" \
  test "$(dk pulled run --rm --network none "$REF" /bin/busybox echo pulled-ok 2>&1)" = pulled-ok
check "docker run works on the base image" \
  dk pulled run --rm --network none "$REGISTRY_ADDR/e2e/base" /bin/busybox true
registry_config "$REGISTRY_ADDR" e2e/special v1 \
  | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))' \
  > "$E2E_WORK/want-diffids"
saved_diff_ids pulled "$REF" > "$E2E_WORK/got-diffids"
check "docker save reproduces the registry's diffIDs" \
  cmp "$E2E_WORK/want-diffids" "$E2E_WORK/got-diffids"
check "docker inspect RepoDigests as docker pull's" \
  test "$(dk pulled image inspect -f '{{json .RepoDigests}}' "$REF")" = "$(dk ref image inspect -f '{{json .RepoDigests}}' "$REF")"
out=$(dk pulled pull "$REF" 2>&1)
log "docker pull on the pulled root: $(echo "$out" | tail -n1)"
check "docker pull afterwards: Image is up to date" grep -q "Image is up to date" <<< "$out"
check "docker pull afterwards downloads nothing" bash -c '! grep -qE "Download|Pull complete" <<< "$1"' _ "$out"

# --- refused while its dockerd runs
imgm pull "$REF" --root "$ROOT" --driver overlay2
rc=$?
cat "$E2E_WORK/imgm.out" >&2
check "a root whose dockerd runs is refused (exit 1)" test "$rc" = 1
check "... with a message naming the running dockerd" grep -q "dockerd (pid [0-9]*) is running" "$E2E_WORK/imgm.out"
dockerd_stop pulled

# --- a second pull downloads nothing
check "second imgmigrate pull succeeds" imgm pull "$REF" --root "$ROOT" --driver overlay2 --format json
check "second pull: up to date, nothing downloaded" \
  python3 -c 'import json,sys; d=[json.loads(x) for x in open(sys.argv[1])][-1]; assert d["upToDate"] and d["downloaded"]==0, d' "$E2E_WORK/imgm.out"

# --- a root with the layers but not the image (tag removed by hand):
#     layers are reused, not downloaded
python3 - "$ROOT/image/overlay2" <<'EOF'
import json, os, sys
d = sys.argv[1]
r = json.load(open(d + "/repositories.json"))
ids = set()
for name, refs in list(r["Repositories"].items()):
    if name.endswith("e2e/special"):
        ids |= set(refs.values())
        del r["Repositories"][name]
json.dump(r, open(d + "/repositories.json", "w"))
for i in ids:
    os.unlink(d + "/imagedb/content/sha256/" + i[7:])
EOF
check "pull with layers present succeeds" imgm pull "$REF" --root "$ROOT" --driver overlay2
check "... every layer reported as already there" \
  test "$(grep -c ': Already exists$' "$E2E_WORK/imgm.out")" = 4
dockerd_start pulled overlay2 || die "dockerd on the pulled root (2)"
check "image back with the same ID" \
  test "$(images_line pulled "$REGISTRY_ADDR/e2e/special")" = "$(images_line ref "$REGISTRY_ADDR/e2e/special")"
dockerd_stop pulled

# --- a vfs root (dockerd -s vfs)
mkdir -p "$E2E_WORK/vfs/data"
check "imgmigrate pull into a vfs root" \
  imgm pull "$REF" --root "$E2E_WORK/vfs/data" --driver vfs --max-concurrent-downloads 2
dockerd_start vfs vfs || die "dockerd -s vfs on the pulled root"
check "vfs: docker images --digests matches docker pull" \
  test "$(images_line vfs "$REGISTRY_ADDR/e2e/special")" = "$(images_line ref "$REGISTRY_ADDR/e2e/special")"
check "vfs: docker run works" \
  test "$(dk vfs run --rm --network none "$REF" /bin/busybox echo vfs-ok 2>&1)" = vfs-ok
saved_diff_ids vfs "$REF" > "$E2E_WORK/got-diffids-vfs"
check "vfs: docker save reproduces the registry's diffIDs" cmp "$E2E_WORK/want-diffids" "$E2E_WORK/got-diffids-vfs"
dockerd_stop vfs

# --- zstd layers (when built with libzstd)
if grep -q "define HAVE_ZSTD 1" "$GR_BUILDDIR/config.h" 2>/dev/null; then
  skopeo copy -q --dest-compress --dest-compress-format zstd "docker-archive:$(make_image special)" \
    "oci:$E2E_WORK/ocz:v1" >&2 || die "skopeo zstd layout"
  skopeo copy -q --dest-tls-verify=false --preserve-digests "oci:$E2E_WORK/ocz:v1" \
    "docker://$REGISTRY_ADDR/e2e/zstd:v1" >&2 || die "skopeo push zstd"
  check "zstd: the registry holds tar+zstd layers" bash -c \
    "curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://$REGISTRY_ADDR/v2/e2e/zstd/manifests/v1 | grep -q 'tar+zstd'"
  mkdir -p "$E2E_WORK/zstd/data"
  check "zstd: imgmigrate pull" imgm pull "$REGISTRY_ADDR/e2e/zstd:v1" --root "$E2E_WORK/zstd/data" --driver overlay2
  check "zstd: same layers (chainIDs) as the gzip image" \
    test "$(ls "$E2E_WORK/zstd/data/image/overlay2/layerdb/sha256" | sort)" = "$(ls "$ROOT/image/overlay2/layerdb/sha256" | sort | grep -Ff <(ls "$E2E_WORK/zstd/data/image/overlay2/layerdb/sha256"))"
  dockerd_start zstd overlay2 || die "dockerd on the zstd root"
  check "zstd: docker run works" \
    test "$(dk zstd run --rm --network none "$REGISTRY_ADDR/e2e/zstd:v1" /bin/busybox echo z-ok 2>&1)" = z-ok
  dockerd_stop zstd
else
  log "built without libzstd: zstd layers not tested"
fi

# --- usage errors
"$IMGMIGRATE" pull "$REF" --driver overlay2 > /dev/null 2>&1
check "missing --root is a usage error (exit 2)" test $? = 2
"$IMGMIGRATE" pull "$REF" --root "$ROOT" --driver zfs > /dev/null 2>&1
check "unknown driver is a usage error (exit 2)" test $? = 2
"$IMGMIGRATE" pull 'Bad:Ref' --root "$ROOT" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1
check "bad reference: exit 1 and docker's message" grep -q "repository name must be lowercase" "$E2E_WORK/imgm.out"
"$IMGMIGRATE" pull "$REGISTRY_ADDR/e2e/nope:v1" --root "$ROOT" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1
check "unknown tag: a not-found error" grep -q "not found" "$E2E_WORK/imgm.out"
"$IMGMIGRATE" pull "$REF" --root "$E2E_WORK/arm" --driver overlay2 --platform linux/arm64 > "$E2E_WORK/imgm.out" 2>&1
check "--platform not matching a single-platform image: exit 1" test $? = 1
check "... with dockerd's message" grep -q "does not match the specified platform: wanted linux/arm64, actual: linux/amd64" "$E2E_WORK/imgm.out"
check "imgmigrate --help exits 0" "$IMGMIGRATE" --help

e2e_finish
