#!/bin/bash
# The GraphDriver plugin protocol, spoken with curl to the real
# aufs-graphdriver binary on a temp socket with a temp Home (REFERENCE.md
# §2): every endpoint, chunked ApplyDiff then Diff back, Changes, bad
# requests (malformed JSON, oversized bodies, unknown endpoints, hostile
# IDs) with the server alive after each, concurrency (a slow upload does
# not block other requests), stale sockets, and SIGTERM (exit 0, mounts
# gone, socket removed).
#
# Environment: see protocol-lib.sh (PLUGIN_BIN, GR_FAKE_BACKEND).
set -u
set -o pipefail

PROTO_NAME=protocol
# shellcheck source=protocol-lib.sh
. "$(dirname "$0")/protocol-lib.sh"

# ---------------------------------------------------------------- layers
mkdir -p "$WORK/l1" "$WORK/l2"
(
  cd "$WORK/l1"
  echo hello >a
  mkdir -p dir/sub
  echo b >dir/b
  ln -s dir/b link
  head -c 3000000 /dev/urandom >big
)
(
  cd "$WORK/l2"
  : >.wh.a
  echo c >c
  mkdir dir
  echo b2 >dir/b
)
tar --format=posix -C "$WORK/l1" -cf "$WORK/l1.tar" a dir link big
tar --format=posix -C "$WORK/l2" -cf "$WORK/l2.tar" .wh.a c dir

# ---------------------------------------------------------------- start
start_plugin
mode=$(stat -c %a "$SOCK")
[ "$mode" = 660 ] && ok || fail "socket mode $mode, want 660"

expect 200 '{"Implements":["GraphDriver"]}' /Plugin.Activate
expect 200 '{"Implements":["GraphDriver"]}' /Plugin.Activate -d ''

# Requests before Init are refused.
expect_err /GraphDriver.Create -d '{"ID":"l1"}'
expect_err /GraphDriver.Status -d '{}'

# Init, with the nulls dockerd sends.
expect 200 '{"Err":""}' /GraphDriver.Init \
  -d "{\"Home\":\"$HOME_DIR\",\"Opts\":null,\"UIDMaps\":null,\"GIDMaps\":null}"
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\",\"Opts\":[]}"
expect_err /GraphDriver.Init -d '{"Home":"relative/path"}'
expect_err /GraphDriver.Init -d '{}'
expect_err /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\",\"UIDMaps\":[{\"container_id\":0,\"host_id\":100000,\"size\":65536}]}"
expect 200 '{"Err":"","Capabilities":{"ReproducesExactDiffs":false}}' /GraphDriver.Capabilities -d '{}'

# ------------------------------------------------- create / apply / diff
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"l1"}'
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"l1"}'
expect 200 '{"Err":"","Exists":false}' /GraphDriver.Exists -d '{"ID":"nope"}'
expect_err /GraphDriver.Create -d '{"ID":"l1"}'
expect_err /GraphDriver.Create -d '{"ID":"x1","Parent":"nope"}'

# ApplyDiff with a chunked body, as dockerd sends it.
call '/GraphDriver.ApplyDiff?id=l1&parent=' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$WORK/l1.tar"
size1=$(json_int Size)
if [ "$CODE" = 200 ] && [ -n "$size1" ] && [ "$size1" -gt 3000000 ]; then ok; else
  fail "ApplyDiff l1: $CODE $BODY"
fi

expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"l2","Parent":"l1","MountLabel":""}'
call '/GraphDriver.ApplyDiff?id=l2&parent=l1' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$WORK/l2.tar"
[ "$CODE" = 200 ] && [ -n "$(json_int Size)" ] && ok || fail "ApplyDiff l2: $CODE $BODY"

# Diff back: a complete tar holding what was applied.
curl -sS --fail --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Diff \
  -d '{"ID":"l1"}' -o "$WORK/l1.diff.tar" || fail "Diff l1: curl exit $?"
list=$(tar -tf "$WORK/l1.diff.tar" 2>&1 | sed 's|^\./||; s|/$||' | sort | tr '\n' ' ')
[ "$list" = "a big dir dir/b dir/sub link " ] && ok || fail "Diff l1 lists: $list"
tar -xOf "$WORK/l1.diff.tar" big | cmp -s - "$WORK/l1/big" && ok || fail "Diff l1: big differs"
curl -sS --fail --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Diff \
  -d '{"ID":"l2","Parent":"l1"}' -o "$WORK/l2.diff.tar" || fail "Diff l2: curl exit $?"
list=$(tar -tf "$WORK/l2.diff.tar" 2>&1 | sed 's|^\./||; s|/$||' | sort | tr '\n' ' ')
[ "$list" = ".wh.a c dir dir/b " ] && ok || fail "Diff l2 lists: $list"
# A Diff that fails before its first byte is a JSON error.
expect_err /GraphDriver.Diff -d '{"ID":"nope"}'

call /GraphDriver.DiffSize -d '{"ID":"l2","Parent":"l1"}'
[ "$CODE" = 200 ] && [ -n "$(json_int Size)" ] && ok || fail "DiffSize: $CODE $BODY"

call /GraphDriver.Changes -d '{"ID":"l2","Parent":"l1"}'
if [ "$CODE" != 200 ] || ! [[ "$BODY" == '{"Err":"","Changes":['* ]]; then
  fail "Changes: $CODE $BODY"
elif [ -z "$FAKE" ]; then
  for c in '{"Path":"/a","Kind":2}' '{"Path":"/c","Kind":1}' '{"Path":"/dir/b","Kind":0}'; do
    [[ "$BODY" == *"$c"* ]] && ok || fail "Changes lacks $c: $BODY"
  done
fi

call /GraphDriver.Status -d '{}'
[[ "$CODE" = 200 && "$BODY" == '{"Err":"","Status":[['* ]] && ok || fail "Status: $CODE $BODY"
call /GraphDriver.GetMetadata -d '{"ID":"l2"}'
[[ "$CODE" = 200 && "$BODY" == '{"Err":"","Metadata":'* ]] && ok || fail "GetMetadata: $CODE $BODY"

# ------------------------------------------------------------- Get / Put
call /GraphDriver.Get -d '{"ID":"l2","MountLabel":""}'
dir=$(json_field Dir)
[ "$CODE" = 200 ] && [ -n "$dir" ] && ok || fail "Get l2: $CODE $BODY"
case "$dir" in "$HOME_DIR"/*) ok ;; *) fail "Get l2: $dir is not under Home" ;; esac
if [ -z "$FAKE" ]; then
  [ "$(cat "$dir/c" 2>&1)" = c ] && ok || fail "Get l2: c missing"
  [ "$(cat "$dir/dir/b" 2>&1)" = b2 ] && ok || fail "Get l2: dir/b not from l2"
  [ -e "$dir/a" ] && fail "Get l2: deleted a is visible" || ok
  cmp -s "$dir/big" "$WORK/l1/big" && ok || fail "Get l2: big from l1 differs"
  mounted "$dir" && ok || fail "Get l2: $dir is not a mount"
fi
expect 200 '{"Err":""}' /GraphDriver.Put -d '{"ID":"l2"}'
if [ -z "$FAKE" ]; then
  mounted "$dir" && fail "Put l2: still mounted" || ok
fi

# Concurrent Get/Put of one layer: reference counted, all succeed.
pids=()
for i in $(seq 8); do
  (curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Get -d '{"ID":"l2"}' >"$WORK/get.$i") &
  pids+=($!)
done
wait "${pids[@]}"
grep -L '"Dir":"' "$WORK"/get.* | grep -q . && fail "concurrent Get: $(cat "$WORK"/get.*)" || ok
pids=()
for i in $(seq 8); do
  (curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Put -d '{"ID":"l2"}' >"$WORK/put.$i") &
  pids+=($!)
done
wait "${pids[@]}"
[ "$(cat "$WORK"/put.* | sort -u)" = '{"Err":""}' ] && ok || fail "concurrent Put: $(cat "$WORK"/put.*)"
if [ -z "$FAKE" ]; then
  mounted "$dir" && fail "after 8 Get + 8 Put l2 is still mounted" || ok
fi

# CreateReadWrite as dockerd does for a container (init layer, then rw).
expect 200 '{"Err":""}' /GraphDriver.CreateReadWrite -d '{"ID":"c1-init","Parent":"l2","StorageOpt":{}}'
expect 200 '{"Err":""}' /GraphDriver.CreateReadWrite -d '{"ID":"c1","Parent":"c1-init"}'
expect_err /GraphDriver.CreateReadWrite -d '{"ID":"c2","Parent":"l2","StorageOpt":{"size":"1G"}}'

# ------------------------------------------------------- bad requests
expect_err /GraphDriver.Exists -d '{"ID":'
expect_err /GraphDriver.Exists -d '[1,2]'
expect_err /GraphDriver.Exists -d '"ID"'
expect_err /GraphDriver.Exists -d '{"ID":42}'
expect_err /GraphDriver.Create -d '{"Parent":"l1"}'
expect_err /GraphDriver.Create -d '{"ID":null}'
head -c 2000000 /dev/zero | tr '\0' ' ' >"$WORK/huge.json"
expect_err /GraphDriver.Create --data-binary @"$WORK/huge.json"
call /GraphDriver.Nope -d '{}'
[ "$CODE" = 404 ] && [[ "$BODY" == '{"Err":"'* ]] && ok || fail "unknown endpoint: $CODE $BODY"
call /GraphDriver.Exists -X GET
[ "$CODE" != 200 ] && ok || fail "GET accepted: $CODE $BODY"
alive

for id in '../x' 'a/b' '/etc' '..' '.' '.hidden' 'x/../../../etc' 'a\u0000b' 'a b' \
  "$(printf 'x%.0s' $(seq 200))"; do
  expect_err /GraphDriver.Create -d "{\"ID\":\"$id\"}"
  expect_err /GraphDriver.Create -d "{\"ID\":\"ok1\",\"Parent\":\"$id\"}"
  expect_err /GraphDriver.Get -d "{\"ID\":\"$id\"}"
  expect_err /GraphDriver.Remove -d "{\"ID\":\"$id\"}"
  expect_err /GraphDriver.Diff -d "{\"ID\":\"$id\"}"
done
expect_err /GraphDriver.Create -d '{"ID":""}'
expect_err '/GraphDriver.ApplyDiff?id=../x' --data-binary @"$WORK/l2.tar"
expect_err '/GraphDriver.ApplyDiff?id=l2&parent=a/b' --data-binary @"$WORK/l2.tar"
expect_err '/GraphDriver.ApplyDiff' -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/l2.tar"
[ -e "$WORK/root/x" ] || [ -e "$WORK/x" ] || [ -e "$HOME_DIR/../x" ] && fail "hostile id created x" || ok
[ -e "$HOME_DIR/ok1" ] && fail "created ok1 with a hostile parent" || ok

# -------------------------------------------------------- concurrency
# A slow chunked upload (paused 8 s) must not hold up other requests: they
# are all answered while it is still in flight.
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"slow"}'
# (curl -T - streams stdin chunked; --data-binary @- would read it all first)
( (head -c 10240 "$WORK/l1.tar"; sleep 8; tail -c +10241 "$WORK/l1.tar") |
  curl -sS --unix-socket "$SOCK" -X POST -H 'Expect:' -T - \
    'http://plugin.moby.localhost/GraphDriver.ApplyDiff?id=slow' >"$WORK/slow.out" ) &
slow=$!
sleep 0.5
pids=()
for i in $(seq 20); do
  (curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Exists -d '{"ID":"l1"}' >"$WORK/ex.$i") &
  pids+=($!)
done
wait "${pids[@]}"
kill -0 "$slow" 2>/dev/null && ok || fail "20 Exists were answered only after the slow upload ended"
[ "$(cat "$WORK"/ex.* | sort -u)" = '{"Err":"","Exists":true}' ] && ok || fail "concurrent Exists"
wait $slow
[[ "$(cat "$WORK/slow.out")" == '{"Err":"","Size":'* ]] && ok || fail "slow ApplyDiff: $(cat "$WORK/slow.out")"
# A client that dies in the middle of an upload leaves no half layer, even
# when the cut falls on an entry boundary (the driver sees an error, not EOF).
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"cut"}'
( (head -c 1536 "$WORK/l1.tar"; sleep 5) |
  timeout 1.5 curl -sS --unix-socket "$SOCK" -X POST -H 'Expect:' -T - \
    'http://plugin.moby.localhost/GraphDriver.ApplyDiff?id=cut' >/dev/null 2>&1 )
alive
if [ -z "$FAKE" ]; then
  curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Diff \
    -d '{"ID":"cut"}' -o "$WORK/cut.tar"
  list=$(tar -tf "$WORK/cut.tar" 2>&1 | tr '\n' ' ')
  [ -z "$list" ] && ok || fail "a cut upload left files: $list"
fi
# A client that drops a Diff stream half-way does not hurt the server.
curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/GraphDriver.Diff \
  -d '{"ID":"l1"}' 2>/dev/null | head -c 1000 >/dev/null
alive

# -------------------------------------------------------------- Remove
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"slow"}'
expect 200 '{"Err":"","Exists":false}' /GraphDriver.Exists -d '{"ID":"slow"}'
expect 200 '{"Err":""}' /GraphDriver.Cleanup -d '{}'

# ---------------------------------------------- a second server refuses
"$PLUGIN_BIN" --socket "$SOCK" 2>"$WORK/second.log" &
second=$!
for _ in $(seq 50); do kill -0 $second 2>/dev/null || break; sleep 0.1; done
if kill -0 $second 2>/dev/null; then
  kill -KILL $second
  fail "a second server started on a live socket"
else
  wait $second
  [ $? != 0 ] && grep -q "in use" "$WORK/second.log" && ok || fail "second server: $(cat "$WORK/second.log")"
fi
alive

# -------------------------------------------------------------- SIGTERM
call /GraphDriver.Get -d '{"ID":"c1"}'
dir=$(json_field Dir)
[ "$CODE" = 200 ] && ok || fail "Get c1: $CODE $BODY"
if [ -z "$FAKE" ]; then
  mounted "$dir" && ok || fail "Get c1: not mounted"
fi
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
[ "$rc" = 0 ] && ok || fail "exit status $rc after SIGTERM"
[ -e "$SOCK" ] && fail "socket left behind after SIGTERM" || ok
n=$(mounts_in_home)
[ "$n" = 0 ] && ok || fail "$n mounts left under Home after SIGTERM"

# A stale socket (server killed with SIGKILL) is replaced at start; layers
# survive the restart.
start_plugin
kill -KILL "$PID"
wait "$PID" 2>/dev/null
PID=""

[ -S "$SOCK" ] && ok || fail "no stale socket to test with"
start_plugin
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\"}"
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"l2"}'
# Init with another Home re-opens there.
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$WORK/root2/aufs-graphdriver\"}"
expect 200 '{"Err":"","Exists":false}' /GraphDriver.Exists -d '{"ID":"l2"}'
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
[ "$rc" = 0 ] && ok || fail "exit status $rc after the second SIGTERM"

# ------------------------------------------------------------ CLI / env
MOUNT_METHOD=bogus "$PLUGIN_BIN" --socket "$SOCK" 2>"$WORK/cli.log"
[ $? = 2 ] && grep -q "mount method" "$WORK/cli.log" && ok || fail "MOUNT_METHOD=bogus: $(cat "$WORK/cli.log")"
"$PLUGIN_BIN" --socket "$SOCK" --log-level chatty 2>"$WORK/cli.log"
[ $? = 2 ] && grep -q "log level" "$WORK/cli.log" && ok || fail "--log-level chatty: $(cat "$WORK/cli.log")"
[ -e "$SOCK" ] && fail "a refused start left a socket" || ok
# LOG_LEVEL=error: quiet on success; --home-override wins over Init's Home.
: >"$LOG"
LOG_LEVEL=error start_plugin --home-override "$WORK/override"
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\"}"
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"o1"}'
call /GraphDriver.Get -d '{"ID":"o1"}'
case "$(json_field Dir)" in "$WORK/override"/*) ok ;; *) fail "--home-override: Get gave $BODY" ;; esac
expect 200 '{"Err":""}' /GraphDriver.Put -d '{"ID":"o1"}'
kill -TERM "$PID"
wait "$PID"
PID=""
[ -s "$LOG" ] && fail "LOG_LEVEL=error still logged: $(head -3 "$LOG")" || ok

# --init-state: a restarted plugin (docker plugin disable/enable) serves the
# Home of the last Init without a new one; no state file, no driver.
STATE=$WORK/init-state.json
start_plugin --init-state "$STATE"
expect_err /GraphDriver.Exists -d '{"ID":"o1"}'
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$WORK/kept\",\"Opts\":null}"
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"k1"}'
kill -TERM "$PID"
wait "$PID"
PID=""
[ "$(stat -c %a "$STATE" 2>/dev/null)" = 600 ] && ok || fail "init state file: $(ls -l "$STATE" 2>&1)"
INIT_STATE=$STATE start_plugin
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"k1"}'
kill -TERM "$PID"
wait "$PID"
PID=""
# a damaged state file is logged and the plugin still serves (and Init works)
echo '{"Home":' >"$STATE"
start_plugin --init-state "$STATE"
grep -q "init state" "$LOG" && ok || fail "a damaged init state was not reported"
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$WORK/kept\"}"
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"k1"}'
kill -TERM "$PID"
wait "$PID"
PID=""

if [ "$FAILED" != 0 ]; then
  echo "test-protocol: FAILED ($CHECKS checks passed)" >&2
  exit 1
fi
echo "test-protocol: $CHECKS checks passed"
exit 0
