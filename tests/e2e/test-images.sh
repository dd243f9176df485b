#!/bin/bash
# docker load of every test image into the daemon under test and into
# overlay2: `docker export` listings identical (names, types, modes, owners,
# sizes, content hashes, link targets, device numbers, xattrs, mtimes), image
# IDs identical, and `docker save` gives back the very layer tars that were
# loaded (same digests as the input tarball and as overlay2).
. "$(dirname "$0")/lib.sh"
e2e_init images
start_pair

cmp_export ()
{
  local img=$1
  export_list ov "$img" --mtime > "$E2E_WORK/ov.$2.list" || return 1
  export_list pl "$img" --mtime > "$E2E_WORK/pl.$2.list" || return 1
  [ -s "$E2E_WORK/ov.$2.list" ] || return 1
  same_file "$E2E_WORK/ov.$2.list" "$E2E_WORK/pl.$2.list" "export listings of $img"
}

input_digests ()
{
  local t
  t=$(mktemp -d "$E2E_WORK/in.XXXXXX")
  tar -C "$t" -xf "$1"
  python3 - "$t" "$2" <<'PY'
import hashlib, json, os, sys
t, tag = sys.argv[1], sys.argv[2]
for m in json.load(open(os.path.join(t, "manifest.json"))):
    if tag in (m.get("RepoTags") or []):
        for l in m["Layers"]:
            print("layer", hashlib.sha256(open(os.path.join(t, l), "rb").read()).hexdigest())
        print("config", hashlib.sha256(open(os.path.join(t, m["Config"]), "rb").read()).hexdigest())
PY
  rm -rf "$t"
}

cmp_save ()
{
  local img=$1 t=$2
  input_digests "$(image_tar "$t")" "$img" > "$E2E_WORK/in.$t.dig"
  layer_digests ov "$img" > "$E2E_WORK/ov.$t.dig" || return 1
  layer_digests pl "$img" > "$E2E_WORK/pl.$t.dig" || return 1
  same_file "$E2E_WORK/in.$t.dig" "$E2E_WORK/ov.$t.dig" "input vs overlay2 save digests of $img" &&
    same_file "$E2E_WORK/in.$t.dig" "$E2E_WORK/pl.$t.dig" "input vs $GR_E2E_SUBJECT save digests of $img"
}

same_id ()
{
  local a b
  a=$(dk ov image inspect -f '{{.Id}} {{.RootFS.Layers}}' "$1") || return 1
  b=$(dk pl image inspect -f '{{.Id}} {{.RootFS.Layers}}' "$1") || return 1
  [ "$a" = "$b" ] || { log "$a != $b"; return 1; }
}

for t in $E2E_IMAGES; do
  img=e2e/$t:latest
  image_ok ov "$img" || continue
  check "$img: image ID and diffIDs" same_id "$img"
  check "$img: docker export listing" cmp_export "$img" "$t"
  check "$img: docker save layer digests" cmp_save "$img" "$t"
done
image_ok ov e2e/debian-base:latest &&
  check "e2e/debian-base (docker import): export listing" cmp_export e2e/debian-base:latest debian-base
assert_no_mounts pl
e2e_finish
