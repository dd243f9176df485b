#!/bin/bash
# docker build of the same Dockerfiles on both daemons: every new layer has
# the same entries (mtimes aside), the images have the same files, and the
# built images run.
. "$(dirname "$0")/lib.sh"
e2e_init build
if image_ok_tar debian; then
  start_pair base debian
else
  start_pair base
fi

# layer_lists DAEMON IMAGE OUT: one tarlist per layer, "== layer N" between.
layer_lists ()
{
  local d=$1 img=$2 t l n=0
  t=$(mktemp -d "$E2E_WORK/save.XXXXXX")
  dk "$d" save "$img" | tar -C "$t" -xf - || return 1
  for l in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$t/manifest.json"); do
    echo "== layer $n"
    # modes without the type bits: the diff-commit test checks the headers
    tarlist --perm-only "$t/$l" || return 1
    n=$((n + 1))
  done
  rm -rf "$t"
}

build_same ()
{
  local dir=$1 tag=$2 d
  for d in ov pl; do
    dk "$d" build -q --no-cache --network none -t "$tag" "$dir" > "$E2E_WORK/$d.build.log" 2>&1 ||
      { cat "$E2E_WORK/$d.build.log" >&2; log "$d: docker build $dir failed"; return 1; }
    layer_lists "$d" "$tag" > "$E2E_WORK/$d.layers" || return 1
  done
  same_file "$E2E_WORK/ov.layers" "$E2E_WORK/pl.layers" "layers built from $dir" || return 1
  export_list ov "$tag" > "$E2E_WORK/ov.list" && export_list pl "$tag" > "$E2E_WORK/pl.list" || return 1
  same_file "$E2E_WORK/ov.list" "$E2E_WORK/pl.list" "export listings of $tag"
}

built_runs ()
{
  local out
  out=$(dk pl run --rm --network none e2e/built-here) || return 1
  [ "$out" = "three
copied by docker build" ] || { log "got '$out'"; return 1; }
  out=$(dk pl run --rm --network none e2e/built-here sh -c 'ls /opq; test -e /del || echo no-del; stat -c "%a %u:%g" /zero; stat -c %t:%T /cdev; readlink /abs')
  [ "$out" = "z
no-del
0 100000:200000
1:3
/changed" ] || { log "got '$out'"; return 1; }
}

check "docker build (busybox): same layers and files as overlay2" build_same "$E2E_DIR/images/built" e2e/built-here
check "docker build (busybox): the image runs" built_runs
if image_ok pl e2e/debian-base; then
  check "docker build (debian, dpkg tools): same layers and files as overlay2" build_same "$E2E_DIR/images/debian" e2e/debian-here
  check "docker build (debian): the image runs" test "$(dk pl run --rm --network none e2e/debian-here)" = "$(dk ov run --rm --network none e2e/debian-here)"
fi
assert_no_mounts pl
e2e_finish
