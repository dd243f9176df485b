#!/bin/bash
# docker push and pull through a private docker-registry on loopback: the
# subject pushes the same manifest (digest) as overlay2 for the same image
# (layers rebuilt from tar-split, compressed the same way), skopeo sees the
# same layer digests, and each daemon pulls what the other pushed to the
# same image, with the same files.
. "$(dirname "$0")/lib.sh"
e2e_init registry
start_pair base special built
registry_start || die "cannot start docker-registry"
R=$REGISTRY_ADDR

push_digest ()
{
  local d=$1 img=$2 ref=$3
  dk "$d" tag "$img" "$ref" || return 1
  dk "$d" push "$ref" 2>&1 | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p'
}

for t in special built; do
  a=$(push_digest ov "e2e/$t:latest" "$R/ov/$t:1")
  b=$(push_digest pl "e2e/$t:latest" "$R/pl/$t:1")
  log "$t: overlay2 pushed $a, subject pushed $b"
  check "e2e/$t: docker push gives the same manifest digest" test -n "$a" -a "$a" = "$b"
  sk () { skopeo inspect --tls-verify=false --raw "docker://$R/$1/$t:1" | jq -c '[.config.digest, [.layers[].digest]]'; }
  check "e2e/$t: skopeo sees the same config and layer digests" test "$(sk ov)" = "$(sk pl)"
done

pull_cross ()
{
  local t=$1
  dk pl pull -q "$R/ov/$t:1" >/dev/null || return 1
  dk ov pull -q "$R/pl/$t:1" >/dev/null || return 1
  [ "$(dk pl image inspect -f '{{.Id}}' "$R/ov/$t:1")" = "$(dk ov image inspect -f '{{.Id}}' "$R/pl/$t:1")" ] || return 1
  export_list pl "$R/ov/$t:1" --mtime > "$E2E_WORK/pl.pulled" && export_list ov "$R/pl/$t:1" --mtime > "$E2E_WORK/ov.pulled" || return 1
  same_file "$E2E_WORK/ov.pulled" "$E2E_WORK/pl.pulled" "export listings of the pulled $t"
}
fresh_pull ()
{
  # a pull into an empty subject: every layer comes from the registry
  dk pl rmi -f $(dk pl images -q) >/dev/null 2>&1
  dk pl image prune -af >/dev/null
  dk pl pull -q "$R/ov/special:1" >/dev/null || return 1
  [ "$(dk pl run --rm --network none "$R/ov/special:1" cat /data/hello)" = "hello again" ] || return 1
  layer_digests pl "$R/ov/special:1" > "$E2E_WORK/pl.dig" && layer_digests ov e2e/special:latest > "$E2E_WORK/ov.dig" || return 1
  same_file "$E2E_WORK/ov.dig" "$E2E_WORK/pl.dig" "docker save of the pulled image"
}
for t in special built; do
  check "e2e/$t: each pulls the other's push, same image and files" pull_cross "$t"
done
check "pull into an empty subject: runs, and save gives the original layers" fresh_pull
assert_no_mounts pl
e2e_finish
