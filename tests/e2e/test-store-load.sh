#!/bin/bash
# The image-side store API writes a graph root as `docker pull` does.
# Every test image (the cached `docker save` tarballs) goes through
# tests/e2e/store-load -- layer writers fed in odd-sized pieces, children
# created on still-pending parents, imagedb, repositories.json,
# distribution metadata -- into a stopped dockerd root, for overlay2 and
# vfs.  Then stock dockerd starts on that root, and against a reference
# daemon of the same driver that got the same images by `docker load`:
#   - the layerdb is the same: chainIDs, diff, size, parent, and the
#     tar-split JSON line for line,
#   - image IDs, RootFS layers (chainIDs) and sizes are the same,
#   - `docker images --digests` shows the recorded manifest digests,
#   - `docker save` gives back the input layer tars byte for byte (tar-split),
#   - `docker export` listings are the same, `docker run` works,
#   - `docker rmi` removes store-written layers cleanly,
#   - store-load refuses a root whose dockerd is running.
# Env: GR_STORE_DRIVERS (default "overlay2 vfs"), GR_E2E_NO_DEBIAN=1 skips
# the 130 MB debian image.
. "$(dirname "$0")/lib.sh"
e2e_init store
STORE_LOAD=${STORE_LOAD:-$GR_BUILDDIR/tests/e2e/store-load}
[ -x "$STORE_LOAD" ] || die "no $STORE_LOAD (built by make check)"
DRIVERS=${GR_STORE_DRIVERS:-overlay2 vfs}

# The images are built (once, cached) on a daemon of their own: the
# reference daemons only ever `docker load` them, as the store does.
dockerd_start builder overlay2 || die "builder dockerd"
build_images builder || die "building the test images"
dockerd_stop builder
IMAGES=""
for t in base special built deep debian; do
  [ -s "$(image_tar "$t")" ] || continue
  [ "$t" = debian ] && [ -n "${GR_E2E_NO_DEBIAN:-}" ] && continue
  IMAGES="$IMAGES $t"
  mkdir -p "$E2E_WORK/x-$t"
  tar -C "$E2E_WORK/x-$t" -xf "$(image_tar "$t")" || die "extract $t"
done
log "images:$IMAGES"

# The tags of an extracted save dir.
tags_of () { python3 -c 'import json,sys; [print(t) for m in json.load(open(sys.argv[1])) for t in m.get("RepoTags") or []]' "$E2E_WORK/x-$1/manifest.json"; }
# The stand-in manifest digest recorded for image T.
mdigest () { echo "sha256:$(printf 'manifest %s' "$1" | sha256sum | cut -c1-64)"; }

# input_digests T TAG: sha256 of the input layer tars and config of TAG.
input_digests ()
{
  python3 - "$E2E_WORK/x-$1" "$2" <<'PY'
import hashlib, json, os, sys
t, tag = sys.argv[1], sys.argv[2]
def h(p):
    d = hashlib.sha256()
    with open(os.path.join(t, p), "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            d.update(b)
    return d.hexdigest()
for m in json.load(open(os.path.join(t, "manifest.json"))):
    if tag in (m.get("RepoTags") or []):
        for l in m["Layers"]:
            print("layer", h(l))
        print("config", h(m["Config"]))
PY
}

for drv in $DRIVERS; do
  st=st-$drv ref=ref-$drv
  dockerd_start "$ref" "$drv" || { fail "reference dockerd $drv"; continue; }
  for t in $IMAGES; do
    dk "$ref" load -q -i "$(image_tar "$t")" > /dev/null || fail "docker load $t into $ref"
  done

  root=$E2E_WORK/$st/data
  mkdir -p "$root"
  start=$(date +%s.%N)
  for t in $IMAGES; do
    "$STORE_LOAD" "$root" "$drv" "$E2E_WORK/x-$t" "$(mdigest "$t")" > /dev/null \
      || fail "store-load $t into $drv"
  done
  log "store-load of$IMAGES into $drv: $(echo "$(date +%s.%N) - $start" | bc) s"
  # loading again changes nothing (every layer and image is there already)
  before=$(find "$root" | sort | sha256sum)
  for t in $IMAGES; do
    "$STORE_LOAD" "$root" "$drv" "$E2E_WORK/x-$t" "$(mdigest "$t")" > /dev/null \
      || fail "second store-load $t into $drv"
  done
  check "$drv: a second load adds nothing" test "$before" = "$(find "$root" | sort | sha256sum)"

  # the layer store as dockerd's own `docker load` wrote it: same chainIDs,
  # diff, size, parent, and tar-split JSON identical line for line
  refdb=$E2E_WORK/$ref/data/image/$drv/layerdb/sha256 stdb=$root/image/$drv/layerdb/sha256
  nref=0 nbad=0
  for l in "$refdb"/*; do
    c=$(basename "$l")
    nref=$((nref + 1))
    for f in diff size parent; do
      if [ -e "$l/$f" ] && ! cmp -s "$l/$f" "$stdb/$c/$f"; then
        nbad=$((nbad + 1))
        log "  layer $c: $f differs: $(cat "$l/$f") vs $(cat "$stdb/$c/$f" 2>&1)"
      fi
    done
    if ! cmp -s <(zcat "$l/tar-split.json.gz") <(zcat "$stdb/$c/tar-split.json.gz" 2>/dev/null); then
      nbad=$((nbad + 1))
      log "  layer $c: tar-split JSON differs"
    fi
  done
  check "$drv: layerdb of $nref layers as docker load's (diff, size, parent, tar-split JSON)" \
    test "$nbad" = 0 -a "$nref" -gt 0 -a "$nref" = "$(ls "$stdb" | wc -l)"

  dockerd_start "$st" "$drv" || { fail "dockerd $drv on the store-written root"; continue; }
  for t in $IMAGES; do
    for tag in $(tags_of "$t"); do
      a=$(dk "$st" image inspect -f '{{.Id}} {{.RootFS.Layers}} {{.Size}}' "$tag")
      b=$(dk "$ref" image inspect -f '{{.Id}} {{.RootFS.Layers}} {{.Size}}' "$tag")
      check "$drv $tag: ID, layers and size as docker load's" test -n "$a" -a "$a" = "$b"
      [ "$a" = "$b" ] || log "  store: $a"$'\n'"  load:  $b"
      d=$(dk "$st" images --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Digest}}' | grep -F -x "$tag $(mdigest "$t")")
      check "$drv $tag: docker images --digests shows the digest reference" test -n "$d"
      input_digests "$t" "$tag" > "$E2E_WORK/in.dig"
      layer_digests "$st" "$tag" > "$E2E_WORK/st.dig"
      check "$drv $tag: docker save reproduces the input layer tars" \
        same_file "$E2E_WORK/in.dig" "$E2E_WORK/st.dig" "save digests of $tag"
      export_list "$st" "$tag" --mtime > "$E2E_WORK/st.list"
      export_list "$ref" "$tag" --mtime > "$E2E_WORK/ref.list"
      check "$drv $tag: export listing as docker load's" \
        same_file "$E2E_WORK/ref.list" "$E2E_WORK/st.list" "export listings of $tag"
    done
  done
  if [[ " $IMAGES " == *" built "* ]]; then
    out=$(dk "$st" run --rm --network none e2e/built 2>&1)
    want=$(dk "$ref" run --rm --network none e2e/built 2>&1)
    check "$drv: docker run e2e/built" test -n "$out" -a "$out" = "$want"
  fi
  if [[ " $IMAGES " == *" deep "* ]]; then
    out=$(dk "$st" run --rm --network none e2e/deep /bin/sh -c 'echo ok' 2>&1)
    check "$drv: docker run on 125 layers" test "$out" = ok
  fi
  # refused while dockerd runs on the root
  if "$STORE_LOAD" "$root" "$drv" "$E2E_WORK/x-base" > "$E2E_WORK/refused.out" 2>&1; then
    fail "$drv: store-load wrote into a root whose dockerd runs"
  else
    check "$drv: a running dockerd is detected" grep -q 'dockerd (pid' "$E2E_WORK/refused.out"
  fi
  # dockerd removes what the store wrote
  home=$root/$drv
  [ "$drv" = vfs ] && home=$root/vfs/dir
  n0=$(ls "$home" | wc -l)
  if [[ " $IMAGES " == *" deep "* ]]; then
    dk "$st" rmi e2e/deep > /dev/null || fail "$drv: docker rmi e2e/deep"
    n1=$(ls "$home" | wc -l)
    check "$drv: docker rmi removed the layer dirs ($n0 -> $n1)" test "$n1" -lt "$n0"
  fi
  dockerd_stop "$st"
  dockerd_stop "$ref"
done
e2e_finish
