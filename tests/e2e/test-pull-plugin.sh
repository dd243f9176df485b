#!/bin/bash
# Pulls into a root of our plugin (driver aufs-graphdriver: aufs layout):
# imgmigrate pull and the plugin's own /Distribution.Pull (JSON lines),
# /Distribution.Images and /Distribution.Inspect; then dockerd with the
# plugin on that root shows the same IDs and digests as `docker pull` on
# overlay2, runs the image, `docker save` gives the registry's diffIDs and
# `docker pull` finds it up to date.
#
# The test plugin has a per-run name (GR_PLUGIN_NAME): the root is pulled
# with --driver "$GR_PLUGIN_NAME" --backend aufs (the default name
# aufs-graphdriver is checked for its layout only).
# e2e: alone (kills and cancellations timed against a slow registry)
. "$(dirname "$0")/pull-lib.sh"

pull_init pull-plugin
registry_start || die "registry"
push special e2e/special:v1 || die "push special"
push base e2e/base:v1 || die "push base"
ROOT=$E2E_WORK/pl/data
mkdir -p "$ROOT"

R0=$E2E_WORK/default-name
check "imgmigrate pull into an aufs-graphdriver root" \
  imgm pull "$REGISTRY_ADDR/e2e/special:v1" --root "$R0" --driver aufs-graphdriver
check "aufs layout: 4 layer files in aufs-graphdriver/layers" \
  test "$(find "$R0/aufs-graphdriver/layers" -type f | wc -l)" = 4
check "aufs layout: every layer has a diff dir" \
  test "$(find "$R0/aufs-graphdriver/diff" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 4
check "image store under image/aufs-graphdriver" \
  test -s "$R0/image/aufs-graphdriver/repositories.json"
"$IMGMIGRATE" pull "$REGISTRY_ADDR/e2e/special:v1" --root "$ROOT" --driver "$GR_PLUGIN_NAME" > /dev/null 2>&1
check "an unknown driver name without --backend is a usage error" test $? = 2
check "imgmigrate pull --driver <plugin name> --backend aufs" \
  imgm pull "$REGISTRY_ADDR/e2e/special:v1" --root "$ROOT" --driver "$GR_PLUGIN_NAME" --backend aufs
cat "$E2E_WORK/imgm.out" >&2
check "layers under <root>/<plugin name>/diff" \
  test "$(find "$ROOT/$GR_PLUGIN_NAME/diff" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 4

# The plugin's endpoints on the stopped root.
plugin_start || die "plugin"
api ()
{
  curl -sS --max-time 120 --unix-socket "$PLUGIN_SOCK" -X POST "http://plugin.moby.localhost/$1" -d "$2"
}
api Distribution.Pull "{\"Reference\":\"$REGISTRY_ADDR/e2e/base:v1\",\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" \
  > "$E2E_WORK/pull.jsonl"
cat "$E2E_WORK/pull.jsonl" >&2
check "/Distribution.Pull streams JSON lines ending with the image ID and digest" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; d=l[-1]; assert len(l) > 3 and d["status"]=="done" and d["id"].startswith("sha256:") and d["digest"].startswith("sha256:"), d' "$E2E_WORK/pull.jsonl"
check "/Distribution.Pull reports per-layer status (base's layer is special's first: reused)" \
  grep -q '"status":"Already exists","id":"[0-9a-f]\{12\}"' "$E2E_WORK/pull.jsonl"
api Distribution.Pull "{\"Reference\":\"$REGISTRY_ADDR/e2e/none:v1\",\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" \
  > "$E2E_WORK/pull-bad.jsonl"
check "/Distribution.Pull of a missing tag ends with an error line" \
  python3 -c 'import json,sys; d=[json.loads(x) for x in open(sys.argv[1])][-1]; assert "not found" in d["error"], d' "$E2E_WORK/pull-bad.jsonl"
api Distribution.Images "{\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" > "$E2E_WORK/images.json"
cat "$E2E_WORK/images.json" >&2; echo >&2
check "/Distribution.Images lists both images with tags and digests" \
  python3 - "$E2E_WORK/images.json" "$REGISTRY_ADDR" <<'EOF'
import json, sys
imgs = json.load(open(sys.argv[1]))["Images"]
addr = sys.argv[2]
tags = sorted(t for i in imgs for t in i["RepoTags"])
assert tags == [addr + "/e2e/base:v1", addr + "/e2e/special:v1"], tags
assert all(len(i["RepoDigests"]) == 1 and i["Size"] > 0 for i in imgs), imgs
EOF
api Distribution.Inspect "{\"Image\":\"$REGISTRY_ADDR/e2e/special:v1\",\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" \
  > "$E2E_WORK/inspect.json"
check "/Distribution.Inspect gives 4 layers and the config" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["Layers"])==4 and d["Config"]["rootfs"]["diff_ids"]==[l["DiffID"] for l in d["Layers"]], d' "$E2E_WORK/inspect.json"
api Distribution.Inspect "{\"Image\":\"nope:v1\",\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" > "$E2E_WORK/inspect-bad.json"
check "/Distribution.Inspect of an unknown image: {\"Err\"}" grep -q '"Err":"no such image' "$E2E_WORK/inspect-bad.json"

# dockerd with the plugin on that root.
dockerd_start ref overlay2 || die "dockerd ref"
dk ref pull -q "$REGISTRY_ADDR/e2e/special:v1" > /dev/null || die "docker pull special"
dk ref pull -q "$REGISTRY_ADDR/e2e/base:v1" > /dev/null || die "docker pull base"
dockerd_start pl plugin || die "dockerd with the plugin on the pulled root"
check_images_match ref pl "plugin root: " "$REGISTRY_ADDR/e2e/special" "$REGISTRY_ADDR/e2e/base"
check "plugin root: docker run works" \
  test "$(dk pl run --rm --network none "$REGISTRY_ADDR/e2e/special:v1" /bin/busybox echo ok 2>&1)" = ok
registry_config "$REGISTRY_ADDR" e2e/special v1 \
  | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))' \
  > "$E2E_WORK/want-diffids"
saved_diff_ids pl "$REGISTRY_ADDR/e2e/special:v1" > "$E2E_WORK/got-diffids"
check "plugin root: docker save reproduces the registry's diffIDs" cmp "$E2E_WORK/want-diffids" "$E2E_WORK/got-diffids"
out=$(dk pl pull "$REGISTRY_ADDR/e2e/special:v1" 2>&1)
check "plugin root: docker pull afterwards: up to date" grep -q "Image is up to date" <<< "$out"

# While its dockerd runs: Images and Inspect read the root (read-only: a
# write set in layerdb/tmp, as dockerd has while it registers a layer, is
# left alone), Pull refuses.
WS=$ROOT/image/$GR_PLUGIN_NAME/layerdb/tmp/write-set-e2e
mkdir "$WS"
api Distribution.Images '{}' > "$E2E_WORK/images-running.json"
check "/Distribution.Images answers while dockerd runs (Root/Driver from the Init)" \
  python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["Images"]; b=json.load(open(sys.argv[2]))["Images"]; assert sorted(i["Id"] for i in a) == sorted(i["Id"] for i in b), (a, b)' \
  "$E2E_WORK/images-running.json" "$E2E_WORK/images.json"
api Distribution.Inspect "{\"Image\":\"$REGISTRY_ADDR/e2e/special:v1\"}" > "$E2E_WORK/inspect-running.json"
check "/Distribution.Inspect answers while dockerd runs" \
  python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["Layers"]) == 4' "$E2E_WORK/inspect-running.json"
check "Images/Inspect left dockerd's layerdb/tmp alone" test -d "$WS"
rmdir "$WS"
api Distribution.Pull "{\"Reference\":\"$REGISTRY_ADDR/e2e/base:v1\",\"Root\":\"$ROOT\",\"Driver\":\"$GR_PLUGIN_NAME\"}" \
  > "$E2E_WORK/pull-running.jsonl" 2>&1
check "/Distribution.Pull refuses a root whose dockerd runs" grep -q "is running" "$E2E_WORK/pull-running.jsonl"

# dockerd stopped, the legacy plugin still up: pull with the Init's defaults.
dockerd_stop pl
push deep e2e/deep:v1 || die "push deep"
api Distribution.Pull "{\"Reference\":\"$REGISTRY_ADDR/e2e/deep:v1\"}" > "$E2E_WORK/pull-init.jsonl"
check "/Distribution.Pull with Root/Driver from the Init (dockerd stopped)" \
  python3 -c 'import json,sys; d=[json.loads(x) for x in open(sys.argv[1])][-1]; assert d["status"]=="done", d' "$E2E_WORK/pull-init.jsonl"
# An image whose layer is gone (as while dockerd removes one) is skipped.
broken='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}'
BROKEN=$ROOT/image/$GR_PLUGIN_NAME/imagedb/content/sha256/$(printf %s "$broken" | sha256sum | cut -c1-64)
printf %s "$broken" > "$BROKEN"
api Distribution.Images '{}' > "$E2E_WORK/images2.json"
rm -f "$BROKEN"
check "/Distribution.Images with the Init's defaults lists 3 images (one with a missing layer skipped)" \
  python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["Images"]) == 3' "$E2E_WORK/images2.json"
dockerd_start pl plugin || die "dockerd with the plugin (again)"
check "the image pulled through the plugin runs" \
  dk pl run --rm --network none "$REGISTRY_ADDR/e2e/deep:v1" /bin/busybox true

# A client that goes away cancels its pull (slow registry, curl gives up).
fake_start "$(make_image special)" crawl || die "fake registry"
CR=$E2E_WORK/cancelled
curl -s --max-time 1 --unix-socket "$PLUGIN_SOCK" -X POST http://plugin.moby.localhost/Distribution.Pull \
  -d "{\"Reference\":\"$FAKE_ADDR/x:t\",\"Root\":\"$CR\",\"Driver\":\"aufs-graphdriver\"}" > /dev/null
wait_for 20 grep -q "pull $FAKE_ADDR/x:t: .*cancelled" "$E2E_WORK/plugin.log"
check "a pull whose client left is cancelled" grep -q "pull $FAKE_ADDR/x:t: .*cancelled" "$E2E_WORK/plugin.log"
check "... and registers nothing" nothing_registered "$CR" aufs-graphdriver "$FAKE_ADDR/x"
# Layers verified before the cancel may stay (as dockerd); no other leftovers.
check "... and leaves no unregistered layer behind" \
  test "$(find "$CR/aufs-graphdriver/diff" -mindepth 1 -maxdepth 1 | wc -l)" = \
  "$(find "$CR/image/aufs-graphdriver/layerdb/sha256" -mindepth 1 -maxdepth 1 | wc -l)"
check "... nor write sets" test -z "$(ls -A "$CR/image/aufs-graphdriver/layerdb/tmp")"

e2e_finish
