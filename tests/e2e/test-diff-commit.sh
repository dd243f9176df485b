#!/bin/bash
# The same changes made in a container on both daemons: `docker diff` gives
# the same set, the container size is the same, `docker commit` gives a layer
# with the same content (mtimes aside) and an image whose files are the same;
# the committed image runs, and overlay2 can load what the subject saved.
. "$(dirname "$0")/lib.sh"
e2e_init diffcommit
start_pair base special

CHANGES='set -e
echo new > /new-file
mkdir -p /newdir/sub && echo deep > /newdir/sub/f
echo appended >> /data/hello
rm /data/blob
rm -rf /data/sub
rm -rf /data/opq && mkdir /data/opq && echo fresh > /data/opq/fresh
chmod 700 /data/sticky
chown 100001:100002 /data/empty
ln /new-file /newdir/hard
ln -s ../new-file /newdir/sym
mknod /newdir/cdev c 1 5
mkfifo /newdir/fifo
rm /data/f2d/z && rmdir /data/f2d && echo file > /data/f2d
rm /data/d2f && mkdir /data/d2f
touch /data/ünïcödé-名前.txt
mv /data/hl-b /data/hl-moved
rm /bin/ls
echo x > /etc/changed'

for d in ov pl; do
  dk "$d" run --name ctr --network none e2e/special sh -c "$CHANGES" || fail "$d: changes in a container"
done

diff_set ()
{
  dk ov diff ctr | sort > "$E2E_WORK/ov.diff" || return 1
  dk pl diff ctr | sort > "$E2E_WORK/pl.diff" || return 1
  same_file "$E2E_WORK/ov.diff" "$E2E_WORK/pl.diff" "docker diff"
}
diff_expected ()
{
  local l rc=0
  for l in "A /new-file" "D /data/blob" "D /data/sub" "C /data/opq" "A /data/opq/fresh" \
    "A /newdir/cdev" "C /data/hello" "D /bin/ls" "A /data/hl-moved" "D /data/hl-b"; do
    grep -qxF "$l" "$E2E_WORK/pl.diff" || { log "docker diff lacks '$l'"; rc=1; }
  done
  return $rc
}
size_rw ()
{
  local a b
  a=$(dk ov inspect -s -f '{{.SizeRw}}' ctr) && b=$(dk pl inspect -s -f '{{.SizeRw}}' ctr) || return 1
  log "SizeRw overlay2 $a, subject $b"
  [ "$a" = "$b" ]
}
check "docker diff: same set as overlay2" diff_set
check "docker diff: the expected changes" diff_expected
check "container size (DiffSize) same as overlay2" size_rw

for d in ov pl; do
  dk "$d" commit -c 'CMD ["cat", "/newdir/sub/f"]' ctr e2e/committed >/dev/null || fail "$d: docker commit"
done

# last_layer DAEMON [tarlist options]: listing of the committed layer tar.
last_layer ()
{
  local d=$1 t
  shift
  t=$(mktemp -d "$E2E_WORK/save.XXXXXX")
  dk "$d" save e2e/committed | tar -C "$t" -xf - || return 1
  tarlist "$@" "$t/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Layers"][-1])' "$t/manifest.json")"
  rm -rf "$t"
}
commit_layer ()
{
  last_layer ov --perm-only > "$E2E_WORK/ov.layer" && last_layer pl --perm-only > "$E2E_WORK/pl.layer" || return 1
  same_file "$E2E_WORK/ov.layer" "$E2E_WORK/pl.layer" "committed layer tars" || return 1
  grep -q '"name": "data/.wh.blob"' "$E2E_WORK/pl.layer" || { log "no whiteout for /data/blob in the committed layer"; return 1; }
  grep -q '"name": "data/opq/.wh..wh..opq"' "$E2E_WORK/pl.layer" || { log "no opaque marker for /data/opq"; return 1; }
}
commit_headers ()
{
  last_layer ov > "$E2E_WORK/ov.layer.raw" && last_layer pl > "$E2E_WORK/pl.layer.raw" || return 1
  same_file "$E2E_WORK/ov.layer.raw" "$E2E_WORK/pl.layer.raw" "committed layer tar headers (modes with type bits)"
}
commit_export ()
{
  export_list ov e2e/committed > "$E2E_WORK/ov.c.list" && export_list pl e2e/committed > "$E2E_WORK/pl.c.list" || return 1
  same_file "$E2E_WORK/ov.c.list" "$E2E_WORK/pl.c.list" "export listings of the committed image"
}
commit_runs ()
{
  local out
  out=$(dk pl run --rm --network none e2e/committed) || return 1
  [ "$out" = deep ] || { log "got '$out'"; return 1; }
  out=$(dk pl run --rm --network none e2e/committed sh -c 'cat /data/opq/*; ls /data/sub 2>&1; cat /newdir/hard; stat -c %h /new-file')
  [ "$out" = "fresh
ls: /data/sub: No such file or directory
new
2" ] || { log "got '$out'"; return 1; }
}
roundtrip ()
{
  dk pl save e2e/committed | dk ov load -q >/dev/null || return 1
  dk pl tag e2e/committed e2e/committed-pl
  export_list ov "$(dk pl image inspect -f '{{.Id}}' e2e/committed)" > "$E2E_WORK/ov.rt.list" || return 1
  same_file "$E2E_WORK/ov.rt.list" "$E2E_WORK/pl.c.list" "the subject's committed image loaded into overlay2"
}
check "docker commit: the new layer has the same entries as overlay2's" commit_layer
check "docker commit: tar headers as moby writes them (mode with file type bits)" commit_headers
check "docker commit: the image has the same files" commit_export
check "docker commit: the committed image runs" commit_runs
check "docker commit: overlay2 loads the subject's save of it identically" roundtrip
assert_no_mounts pl
e2e_finish
