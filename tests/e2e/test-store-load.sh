#!/bin/bash
# The image-side store API writes a graph root as `docker pull` does.
# Every test image (the cached `docker save` tarballs) goes through
# tests/e2e/store-load -- layer writers fed in odd-sized pieces, children
# created on still-pending parents, imagedb, repositories.json,
# distribution metadata -- into a stopped dockerd root, for overlay2, vfs
# and our aufs-graphdriver plugin.  Against a reference daemon of the same
# driver that got the same images by `docker load`:
#   - the layerdb is the same: chainIDs, diff, size, parent, and the
#     tar-split JSON line for line,
#   - a second load adds nothing.
# Then stock dockerd starts on the store-written root and
#   - image IDs, RootFS layers (chainIDs) and sizes are docker load's,
#   - `docker images --digests` shows the recorded manifest digests,
#   - `docker save` gives back the input layer tars byte for byte (tar-split),
#   - `docker export` listings and `docker run` output are docker load's,
#   - `docker rmi` removes store-written layers,
#   - store-load refuses the root while that dockerd runs.
# Env: GR_STORE_DRIVERS (default "overlay2 vfs plugin"), GR_E2E_NO_DEBIAN=1
# skips the 130 MB debian image, which only overlay2 gets unless
# GR_STORE_DEBIAN_ALL=1 (keeps the run well under the 900 s e2e timeout).
. "$(dirname "$0")/lib.sh"
e2e_init store
STORE_LOAD=${STORE_LOAD:-$GR_BUILDDIR/tests/e2e/store-load}
[ -x "$STORE_LOAD" ] || die "no $STORE_LOAD (built by make check)"
DRIVERS=${GR_STORE_DRIVERS:-overlay2 vfs plugin}

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
has_image () { [[ " $IMAGES " == *" $1 "* ]]; }

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

# start DAEMON DRV: dockerd (and for "plugin" our plugin first).
start ()
{
  if [ "$2" = plugin ]; then
    plugin_start || return 1
  fi
  dockerd_start "$1" "$2"
}
stop ()
{
  dockerd_stop "$1"
  [ "$2" = plugin ] && plugin_stop
  return 0
}

# facts DAEMON OUT: what the daemon says about every test image, in OUT/.
facts ()
{
  local d=$1 out=$2 t tag i=0
  mkdir -p "$out"
  for t in $IMAGES; do
    for tag in $(tags_of "$t"); do
      i=$((i + 1))
      dk "$d" image inspect -f '{{.Id}} {{.RootFS.Layers}} {{.Size}}' "$tag" > "$out/$i.inspect" 2>&1
      export_list "$d" "$tag" --mtime > "$out/$i.list" 2>&1
    done
  done
  if has_image built; then
    dk "$d" run --rm --network none e2e/built > "$out/run.built" 2>&1
  fi
}

ALL_IMAGES=$IMAGES
for drv in $DRIVERS; do
  st=st-$drv ref=ref-$drv name=$drv spec=$drv
  IMAGES=$ALL_IMAGES
  if [ "$drv" != overlay2 ] && [ -z "${GR_STORE_DEBIAN_ALL:-}" ]; then
    IMAGES=${IMAGES/ debian/}
  fi
  # vfs copies every parent into each layer: 125 layers take minutes there
  # and prove nothing the other drivers don't (GR_STORE_DEEP_VFS=1 for it).
  if [ "$drv" = vfs ] && [ -z "${GR_STORE_DEEP_VFS:-}" ]; then
    IMAGES=${IMAGES/ deep/}
  fi
  if [ "$drv" = plugin ]; then
    name=$GR_PLUGIN_NAME spec=$GR_PLUGIN_NAME=aufs
  fi
  # the reference: docker load
  start "$ref" "$drv" || { fail "reference dockerd $drv"; continue; }
  for t in $IMAGES; do
    dk "$ref" load -q -i "$(image_tar "$t")" > /dev/null || fail "docker load $t into $ref"
  done
  facts "$ref" "$E2E_WORK/facts-$ref"
  stop "$ref" "$drv"

  # the store
  root=$E2E_WORK/$st/data
  mkdir -p "$root"
  start=$(date +%s.%N)
  for t in $IMAGES; do
    "$STORE_LOAD" "$root" "$spec" "$E2E_WORK/x-$t" "$(mdigest "$t")" > /dev/null \
      || fail "store-load $t into $drv"
  done
  log "store-load of$IMAGES into $drv: $(echo "$(date +%s.%N) - $start" | bc) s"
  before=$(find "$root" | sort | sha256sum)
  for t in $IMAGES; do
    "$STORE_LOAD" "$root" "$spec" "$E2E_WORK/x-$t" "$(mdigest "$t")" > /dev/null \
      || fail "second store-load $t into $drv"
  done
  check "$drv: a second load adds nothing" test "$before" = "$(find "$root" | sort | sha256sum)"

  refdb=$E2E_WORK/$ref/data/image/$name/layerdb/sha256 stdb=$root/image/$name/layerdb/sha256
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

  start "$st" "$drv" || { fail "dockerd $drv on the store-written root"; continue; }
  facts "$st" "$E2E_WORK/facts-$st"
  i=0
  for t in $IMAGES; do
    for tag in $(tags_of "$t"); do
      i=$((i + 1))
      check "$drv $tag: ID, layers and size as docker load's" \
        same_file "$E2E_WORK/facts-$ref/$i.inspect" "$E2E_WORK/facts-$st/$i.inspect" "inspect of $tag"
      check "$drv $tag: export listing as docker load's" \
        same_file "$E2E_WORK/facts-$ref/$i.list" "$E2E_WORK/facts-$st/$i.list" "export listings of $tag"
      d=$(dk "$st" images --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Digest}}' | grep -F -x "$tag $(mdigest "$t")")
      check "$drv $tag: docker images --digests shows the digest reference" test -n "$d"
      input_digests "$t" "$tag" > "$E2E_WORK/in.dig"
      layer_digests "$st" "$tag" > "$E2E_WORK/st.dig"
      check "$drv $tag: docker save reproduces the input layer tars" \
        same_file "$E2E_WORK/in.dig" "$E2E_WORK/st.dig" "save digests of $tag"
    done
  done
  if has_image built; then
    check "$drv: docker run e2e/built as docker load's" \
      same_file "$E2E_WORK/facts-$ref/run.built" "$E2E_WORK/facts-$st/run.built" "run output"
  fi
  if has_image deep; then
    out=$(dk "$st" run --rm --network none e2e/deep /bin/sh -c 'echo ok' 2>&1)
    check "$drv: docker run on 125 layers" test "$out" = ok
  fi
  if "$STORE_LOAD" "$root" "$spec" "$E2E_WORK/x-base" > "$E2E_WORK/refused.out" 2>&1; then
    fail "$drv: store-load wrote into a root whose dockerd runs"
  else
    check "$drv: a running dockerd is detected" grep -q 'dockerd (pid' "$E2E_WORK/refused.out"
  fi
  if has_image deep; then
    n0=$(find "$root/$name" -maxdepth 3 | wc -l)
    dk "$st" rmi e2e/deep > /dev/null || fail "$drv: docker rmi e2e/deep"
    n1=$(find "$root/$name" -maxdepth 3 | wc -l)
    check "$drv: docker rmi removed layers ($n0 -> $n1 paths)" test "$n1" -lt "$n0"
  fi
  stop "$st" "$drv"
done
e2e_finish
