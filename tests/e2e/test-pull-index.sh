#!/bin/bash
# Multi-platform images: an OCI index (of OCI manifests) and a docker
# manifest list (of schema2 manifests) put into a real docker-registry.
# imgmigrate picks the host's platform by default (same result as `docker
# pull`), another with --platform, and fails clearly for a platform the
# index lacks.
. "$(dirname "$0")/pull-lib.sh"

pull_init pull-index
registry_start || die "registry"

# put_index REPO TAG MEDIATYPE AMD64-TAG ARM64-TAG: an index of two existing manifests.
put_index ()
{
  local repo=$1 tag=$2 mt=$3 amd=$4 arm=$5
  python3 - "$REGISTRY_ADDR" "$repo" "$tag" "$mt" "$amd" "$arm" <<'EOF' || return 1
import json, sys, urllib.request
addr, repo, tag, mt, amd, arm = sys.argv[1:]
child_mt = ("application/vnd.oci.image.manifest.v1+json" if "oci" in mt
            else "application/vnd.docker.distribution.manifest.v2+json")
def desc(t, arch):
    req = urllib.request.Request("http://%s/v2/%s/manifests/%s" % (addr, repo, t), headers={"Accept": child_mt})
    with urllib.request.urlopen(req) as r:
        body = r.read()
        assert r.headers["Content-Type"] == child_mt, r.headers["Content-Type"]
        return {"mediaType": child_mt, "digest": r.headers["Docker-Content-Digest"], "size": len(body),
                "platform": {"os": "linux", "architecture": arch}}
doc = {"schemaVersion": 2, "mediaType": mt,
       "manifests": [desc(arm, "arm64"), desc(amd, "amd64"),
                     dict(desc(arm, "arm"), platform={"os": "linux", "architecture": "arm", "variant": "v7"})]}
data = json.dumps(doc).encode()
req = urllib.request.Request("http://%s/v2/%s/manifests/%s" % (addr, repo, tag), data=data,
                             method="PUT", headers={"Content-Type": mt})
urllib.request.urlopen(req).read()
EOF
}

push base e2e/multi:oci-amd64 --format oci || die "push base (oci)"
push special e2e/multi:oci-arm64 --format oci || die "push special (oci)"
push base e2e/multi:v2-amd64 || die "push base"
push special e2e/multi:v2-arm64 || die "push special"
put_index e2e/multi oci application/vnd.oci.image.index.v1+json oci-amd64 oci-arm64 || die "put OCI index"
put_index e2e/multi list application/vnd.docker.distribution.manifest.list.v2+json v2-amd64 v2-arm64 \
  || die "put manifest list"

# Image IDs of the single-platform images, from the registry.
id_of ()
{
  registry_config "$REGISTRY_ADDR" e2e/multi "$1" | sha256sum | sed 's/^\([0-9a-f]*\).*/sha256:\1/'
}
BASE_OCI=$(id_of oci-amd64)
SPECIAL_OCI=$(id_of oci-arm64)
BASE_V2=$(id_of v2-amd64)
SPECIAL_V2=$(id_of v2-arm64)

dockerd_start ref overlay2 || die "dockerd ref"
mkdir -p "$E2E_WORK/pulled/data"
ROOT=$E2E_WORK/pulled/data
for tag in oci list; do
  case $tag in oci) base=$BASE_OCI special=$SPECIAL_OCI ;; list) base=$BASE_V2 special=$SPECIAL_V2 ;; esac
  REF=$REGISTRY_ADDR/e2e/multi:$tag
  check "$tag: default platform pull" imgm pull "$REF" --root "$ROOT" --driver overlay2 --format json
  got=$(python3 -c 'import json,sys; print([json.loads(x) for x in open(sys.argv[1])][-1]["id"])' "$E2E_WORK/imgm.out")
  check "$tag: default platform is linux/amd64 (the base image)" test "$got" = "$base"
  r2=$E2E_WORK/arm-$tag
  check "$tag: --platform linux/arm64" imgm pull "$REF" --root "$r2" --driver overlay2 --platform linux/arm64 --format json
  got=$(python3 -c 'import json,sys; print([json.loads(x) for x in open(sys.argv[1])][-1]["id"])' "$E2E_WORK/imgm.out")
  check "$tag: linux/arm64 picks the arm64 entry" test "$got" = "$special"
  r3=$E2E_WORK/arm7-$tag
  check "$tag: --platform linux/arm (v7 implied)" imgm pull "$REF" --root "$r3" --driver overlay2 --platform linux/arm
  imgm pull "$REF" --root "$E2E_WORK/s390x-$tag" --driver overlay2 --platform linux/s390x
  check "$tag: a platform the index lacks fails" test $? = 1
  check "$tag: ... saying so" grep -q "no matching manifest for linux/s390x" "$E2E_WORK/imgm.out"
  dk ref pull -q "$REF" > /dev/null || fail "docker pull $REF"
done

dockerd_start pulled overlay2 || die "dockerd on the pulled root"
for tag in oci list; do
  want=$(dk ref images --digests --no-trunc --format '{{.Tag}} {{.Digest}} {{.ID}}' "$REGISTRY_ADDR/e2e/multi" | grep "^$tag ")
  got=$(dk pulled images --digests --no-trunc --format '{{.Tag}} {{.Digest}} {{.ID}}' "$REGISTRY_ADDR/e2e/multi" | grep "^$tag ")
  log "ref:    $want"
  log "pulled: $got"
  check "$tag: same tag, index digest and ID as docker pull" test -n "$got" -a "$got" = "$want"
  check "$tag: docker run works" dk pulled run --rm --network none "$REGISTRY_ADDR/e2e/multi:$tag" /bin/busybox true
  out=$(dk pulled pull "$REGISTRY_ADDR/e2e/multi:$tag" 2>&1)
  check "$tag: docker pull afterwards: up to date" grep -q "Image is up to date" <<< "$out"
done

e2e_finish
