#!/bin/bash
# Hostile clients and a corrupt graph root against the real
# aufs-graphdriver binary (temp socket, temp Home; helpers in
# protocol-lib.sh): each bad request gets a clear {"Err":...}, the server
# stays up, layers already stored stay intact, nothing is written outside
# the layer.  IDs with NUL/%00, invalid UTF-8, very long IDs; parents
# removed under their children; concurrent Create/Remove/Get/Put of one ID;
# ApplyDiff into missing, mounted, busy or already applied layers; Diff
# during an ApplyDiff; corrupt layers/ files, symlinked diff/ and mnt/
# dirs, a garbage whiteout-format; many idle and slow connections.
#
# Environment: see protocol-lib.sh (PLUGIN_BIN).
set -u
set -o pipefail

PROTO_NAME=hostile-protocol
# shellcheck source=protocol-lib.sh
. "$(dirname "$0")/protocol-lib.sh"

U=http://plugin.moby.localhost
# raw ENDPOINT [curl args]: print the body (no status), for background jobs.
raw () { curl -sS --unix-socket "$SOCK" -X POST "$U$1" "${@:2}" 2>&1; }
# apply ID TAR [PARENT]: ApplyDiff, sets CODE/BODY.
apply () { call "/GraphDriver.ApplyDiff?id=$1&parent=${3:-}" -H 'Transfer-Encoding: chunked' --data-binary @"$2"; }
# err_has TEXT: the last reply is an error naming TEXT.
err_has ()
{
  if [ "$CODE" != 200 ] && [[ "$BODY" == '{"Err":"'*"$1"* ]]; then ok; else
    fail "want an error with \"$1\", got $CODE $BODY"
  fi
}
tree_sum () { (cd "$1" && find . -printf '%p %y %s %m\n' | sort && find . -type f -exec cat {} + | md5sum); }

mkdir -p "$WORK/t1" "$WORK/t2" "$WORK/outside"
echo one >"$WORK/t1/one"
mkdir "$WORK/t1/d"
echo deep >"$WORK/t1/d/f"
echo two >"$WORK/t2/two"
head -c 4000000 /dev/urandom >"$WORK/t2/big"
tar --format=posix -C "$WORK/t1" -cf "$WORK/t1.tar" one d
tar --format=posix -C "$WORK/t2" -cf "$WORK/t2.tar" two big
echo secret >"$WORK/outside/secret"
OUTSIDE_SUM=$(tree_sum "$WORK/outside")

start_plugin
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\"}"
# A base and a child that every section below must leave alone.
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"keep"}'
apply keep "$WORK/t1.tar"
[ "$CODE" = 200 ] && ok || fail "ApplyDiff keep: $CODE $BODY"
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"keepkid","Parent":"keep"}'
apply keepkid "$WORK/t2.tar" keep
[ "$CODE" = 200 ] && ok || fail "ApplyDiff keepkid: $CODE $BODY"
KEEP_SUM=$(tree_sum "$HOME_DIR/diff/keep")
KEEPKID_SUM=$(tree_sum "$HOME_DIR/diff/keepkid")

intact ()
{
  alive
  [ "$(tree_sum "$HOME_DIR/diff/keep")" = "$KEEP_SUM" ] && ok || fail "$1: layer keep changed"
  [ "$(tree_sum "$HOME_DIR/diff/keepkid")" = "$KEEPKID_SUM" ] && ok || fail "$1: layer keepkid changed"
  [ "$(tree_sum "$WORK/outside")" = "$OUTSIDE_SUM" ] && ok || fail "$1: the outside dir changed"
  call /GraphDriver.Get -d '{"ID":"keepkid"}'
  [ "$CODE" = 200 ] && [ "$(cat "$(json_field Dir)/one" 2>&1)" = one ] && ok || fail "$1: Get keepkid: $CODE $BODY"
  call /GraphDriver.Put -d '{"ID":"keepkid"}'
}

# ------------------------------------------------------------ hostile IDs
# %00 in the query string must not cut the ID short (`keep%00x` is not `keep`).
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"nul"}'
apply 'nul%00../../x' "$WORK/t1.tar"
err_has 'invalid layer id'
[ -z "$(ls -A "$HOME_DIR/diff/nul")" ] && ok || fail "ApplyDiff ?id=nul%00...: applied into nul"
apply 'keep%00' "$WORK/t2.tar"
err_has 'invalid layer id'
apply nul "$WORK/t1.tar" 'keep%00'
err_has 'invalid layer id'
# ... nor in the path.
call '/GraphDriver.Remove%00x' -d '{"ID":"nul"}'
[ "$CODE" = 404 ] && ok || fail "/GraphDriver.Remove%00x: $CODE $BODY"
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"nul"}'
# Invalid UTF-8 in an ID: still a readable error, not "cannot encode".
apply '%FF%FE' "$WORK/t1.tar"
err_has 'invalid layer id `\\xFF\\xFE`'
call /GraphDriver.Create -d '{"ID":"a\u0000b"}'
err_has 'NUL'
call /GraphDriver.Create -d '{"ID":"\ud800"}'
[ "$CODE" != 200 ] && ok || fail "a lone surrogate ID: $CODE $BODY"
# Very long IDs: JSON, query string, a 1 MB ID (over the JSON limit).
long=$(head -c 5000 /dev/zero | tr '\0' a)
call /GraphDriver.Create -d "{\"ID\":\"$long\"}"
err_has 'longer than 128'
apply "$long" "$WORK/t1.tar"
err_has 'longer than 128'
head -c 300000 /dev/zero | tr '\0' b >"$WORK/longid"
call "/GraphDriver.ApplyDiff?id=$(cat "$WORK/longid")" --data-binary @"$WORK/t1.tar"
[ "$CODE" != 200 ] && ok || fail "a 300 kB query ID: $CODE"
{ printf '{"ID":"'; head -c 1100000 /dev/zero | tr '\0' c; printf '"}'; } >"$WORK/hugeid.json"
expect_err /GraphDriver.Create --data-binary @"$WORK/hugeid.json"
for id in 'x-removing' '-init' 'a%2Fb' '%2e%2e'; do
  expect_err /GraphDriver.Create -d "{\"ID\":\"$id\"}"
  call "/GraphDriver.ApplyDiff?id=$id" --data-binary @"$WORK/t1.tar"
  [ "$CODE" != 200 ] && ok || fail "ApplyDiff ?id=$id: $CODE $BODY"
done
# Init with a Home that is not a normalised absolute path.
for h in '/' '/tmp/../etc' "$WORK/./root" "$WORK/a/.." 'relative' "$(printf '/tmp/x\001y')"; do
  expect_err /GraphDriver.Init -d "{\"Home\":\"$h\"}"
done
[ -e /etc/layers ] && fail "Init wrote into /etc" || ok
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"keep"}'
# Malformed JSON of every shape (the server must answer each and live).
for body in '{' '}' '{"ID":"keep",}' '{"ID":"keep"} x' '{"ID":["keep"]}' '{"ID":{"a":1}}' \
  '{"ID":"keep","ID":"../x"}' 'null' '1e999999' '"\u0000"' "$(printf '{"ID":"\xff"}')" \
  "$(head -c 100000 /dev/zero | tr '\0' '[')"; do
  expect_err /GraphDriver.Remove -d "$body"
done
intact "hostile IDs"

# ------------------------------------------------------ parents, removal
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"par"}'
apply par "$WORK/t1.tar"
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"chi","Parent":"par"}'
call /GraphDriver.Remove -d '{"ID":"par"}'
err_has 'chi'
expect 200 '{"Err":"","Exists":true}' /GraphDriver.Exists -d '{"ID":"par"}'
[ "$(cat "$HOME_DIR/diff/par/one" 2>&1)" = one ] && ok || fail "Remove of a parent lost its files"
call /GraphDriver.Get -d '{"ID":"chi"}'
[ "$CODE" = 200 ] && [ "$(cat "$(json_field Dir)/one" 2>&1)" = one ] && ok || fail "Get chi after Remove par: $CODE $BODY"
expect 200 '{"Err":""}' /GraphDriver.Put -d '{"ID":"chi"}'
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"chi"}'
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"par"}'
# Children created while their parent is removed, from many clients: in
# the end every layer's parents exist.
for round in 1 2 3; do
  expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"rp"}'
  pids=()
  for i in $(seq 12); do
    if [ "$i" = 6 ]; then
      (raw /GraphDriver.Remove -d '{"ID":"rp"}' >/dev/null) &
    else
      (raw /GraphDriver.Create -d "{\"ID\":\"rc$i\",\"Parent\":\"rp\"}" >/dev/null) &
    fi
    pids+=($!)
  done
  wait "${pids[@]}"
  for f in "$HOME_DIR"/layers/rc*; do
    [ -e "$f" ] || continue
    [ -e "$HOME_DIR/layers/rp" ] && [ -d "$HOME_DIR/diff/rp" ] && ok || fail "round $round: $(basename "$f") lost its parent"
    raw /GraphDriver.Remove -d "{\"ID\":\"$(basename "$f")\"}" >/dev/null
  done
  raw /GraphDriver.Remove -d '{"ID":"rp"}' >/dev/null
done
intact "parents"

# ---------------------------------- one ID from many clients at once
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"base2"}'
pids=()
for i in $(seq 40); do
  case $((i % 4)) in
    0) (raw /GraphDriver.Create -d '{"ID":"same","Parent":"base2"}' >"$WORK/same.$i") & ;;
    1) (raw /GraphDriver.Get -d '{"ID":"same"}' >"$WORK/same.$i") & ;;
    2) (raw /GraphDriver.Put -d '{"ID":"same"}' >"$WORK/same.$i") & ;;
    3) (raw /GraphDriver.Remove -d '{"ID":"same"}' >"$WORK/same.$i") & ;;
  esac
  pids+=($!)
done
wait "${pids[@]}"
bad=$(grep -L '^{"Err":' "$WORK"/same.* | head -3)
[ -z "$bad" ] && ok || fail "same ID from 40 clients: replies $(cat $bad)"
alive
# Whatever happened, it can be cleaned up and leaves nothing behind.
for _ in $(seq 40); do raw /GraphDriver.Put -d '{"ID":"same"}' >/dev/null; done
raw /GraphDriver.Remove -d '{"ID":"same"}' >/dev/null
expect 200 '{"Err":"","Exists":false}' /GraphDriver.Exists -d '{"ID":"same"}'
left=$(ls -d "$HOME_DIR"/*/same* 2>/dev/null)
[ -z "$left" ] && ok || fail "left behind: $left"
[ "$(awk -v r="$HOME_DIR/mnt/same" '$5 == r' /proc/self/mountinfo | wc -l)" = 0 ] && ok || fail "same still mounted"
intact "same ID"

# -------------------------------------------------------------- ApplyDiff
apply nosuch "$WORK/t1.tar"
err_has 'nosuch'
# twice into one layer: refused, the first diff stays
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"twice"}'
apply twice "$WORK/t1.tar"
[ "$CODE" = 200 ] && ok || fail "first ApplyDiff twice: $CODE $BODY"
apply twice "$WORK/t2.tar"
err_has 'twice'
printf 'not a tar, not at all, and longer than one block? no.' >"$WORK/junk"
apply twice "$WORK/junk"
[ "$CODE" != 200 ] && ok || fail "junk ApplyDiff: $CODE $BODY"
[ "$(cat "$HOME_DIR/diff/twice/one" 2>&1)" = one ] && ok || fail "a refused second ApplyDiff lost the first"
[ -e "$HOME_DIR/diff/twice/big" ] && fail "the second ApplyDiff was applied" || ok
# into a mounted layer: refused
expect 200 '{"Err":""}' /GraphDriver.CreateReadWrite -d '{"ID":"mounted","Parent":"twice"}'
call /GraphDriver.Get -d '{"ID":"mounted"}'
apply mounted "$WORK/t2.tar" twice
err_has 'mounted'
expect 200 '{"Err":""}' /GraphDriver.Put -d '{"ID":"mounted"}'
# into a layer being applied; Diff/Remove/Get of it meanwhile: busy
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"slowly"}'
( (head -c 10240 "$WORK/t2.tar"; sleep 3; tail -c +10241 "$WORK/t2.tar") |
  curl -sS --unix-socket "$SOCK" -X POST -H 'Expect:' -T - "$U/GraphDriver.ApplyDiff?id=slowly" >"$WORK/slowly.out" 2>&1 ) &
slowly=$!
sleep 1
apply slowly "$WORK/t1.tar"
err_has 'busy'
call /GraphDriver.Diff -d '{"ID":"slowly"}'
err_has 'busy'
call /GraphDriver.Remove -d '{"ID":"slowly"}'
err_has 'busy'
call /GraphDriver.Get -d '{"ID":"slowly"}'
err_has 'busy'
wait $slowly
[[ "$(cat "$WORK/slowly.out")" == '{"Err":"","Size":'* ]] && ok || fail "the slow ApplyDiff: $(cat "$WORK/slowly.out")"
cmp -s "$HOME_DIR/diff/slowly/big" "$WORK/t2/big" && ok || fail "the slow ApplyDiff was disturbed"
[ -e "$HOME_DIR/diff/slowly/one" ] && fail "a concurrent ApplyDiff wrote into slowly" || ok
intact "ApplyDiff"

# ------------------------------------------------------- hostile tars
# Every breakout tar of tests/fuzz/make-seeds.py through the real server,
# in a fresh layer each: refused or confined, never outside Home, and a
# refused one leaves an empty layer.
if python3 "$(dirname "$0")/../fuzz/make-seeds.py" "$WORK/seeds" 2>"$WORK/seeds.err"; then
  # (names next to Home and in the work dir; the outside dir's content)
  around () { ls -A "$WORK" "$WORK/root" "$HOME_DIR"; tree_sum "$WORK/outside"; }
  HOME_BEFORE=$(around)
  n=0
  for t in "$WORK"/seeds/apply/*; do
    n=$((n + 1))
    expect 200 '{"Err":""}' /GraphDriver.Create -d "{\"ID\":\"tar$n\"}"
    apply "tar$n" "$t"
    if [ "$CODE" != 200 ]; then
      [ -z "$(ls -A "$HOME_DIR/diff/tar$n")" ] && ok || fail "refused $(basename "$t") left files in the layer"
    fi
    raw /GraphDriver.Remove -d "{\"ID\":\"tar$n\"}" >/dev/null
  done
  [ "$(around)" = "$HOME_BEFORE" ] && ok || fail "hostile tars changed files outside the layers: $(diff <(echo "$HOME_BEFORE") <(around))"
  intact "hostile tars"
else
  fail "make-seeds.py: $(cat "$WORK/seeds.err")"
fi

# ----------------------------------------------------- corrupt graph root
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"ghostkid","Parent":"keep"}'
printf 'ghost\n' >"$HOME_DIR/layers/ghostkid"
call /GraphDriver.Get -d '{"ID":"ghostkid"}'
err_has 'ghost'
call /GraphDriver.Changes -d '{"ID":"ghostkid"}'
err_has 'ghost'
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"dotkid","Parent":"keep"}'
printf '../x\n' >"$HOME_DIR/layers/dotkid"
call /GraphDriver.Get -d '{"ID":"dotkid"}'
err_has 'corrupt parent chain'
call /GraphDriver.Create -d '{"ID":"dotkid2","Parent":"dotkid"}'
[ "$CODE" != 200 ] || [ "$(head -1 "$HOME_DIR/layers/dotkid2")" = dotkid ] && ok || fail "child of dotkid: $CODE $BODY"
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"bigchain","Parent":"keep"}'
head -c 10000000 /dev/zero | tr '\0' a >"$HOME_DIR/layers/bigchain"
call /GraphDriver.Get -d '{"ID":"bigchain"}'
err_has 'bigchain'
call /GraphDriver.Create -d '{"ID":"bigkid","Parent":"bigchain"}'
err_has 'bigchain'
# diff/<id> a symlink to a dir outside Home
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"symbase"}'
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"symkid","Parent":"symbase"}'
rmdir "$HOME_DIR/diff/symbase" && ln -s "$WORK/outside" "$HOME_DIR/diff/symbase"
call /GraphDriver.Get -d '{"ID":"symbase"}'
err_has 'not a directory'
call /GraphDriver.Get -d '{"ID":"symkid"}'
err_has 'not a directory'
apply symbase "$WORK/t1.tar"
[ "$CODE" != 200 ] && ok || fail "ApplyDiff through a symlinked diff dir: $CODE $BODY"
call /GraphDriver.Diff -d '{"ID":"symbase"}'
# (the reply says why, not only what failed)
err_has 'symbolic links'
call /GraphDriver.Create -d '{"ID":"orphan","Parent":"symbase"}'
rm "$HOME_DIR/diff/symbase"
call /GraphDriver.Changes -d '{"ID":"orphan"}'
err_has 'No such file or directory'
ln -s "$WORK/outside" "$HOME_DIR/diff/symbase"
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"orphan"}'
# mnt/<id> a symlink: mount(2) must not follow it
expect 200 '{"Err":""}' /GraphDriver.Create -d '{"ID":"mntsym","Parent":"keep"}'
rmdir "$HOME_DIR/mnt/mntsym" && ln -s "$WORK/outside" "$HOME_DIR/mnt/mntsym"
call /GraphDriver.Get -d '{"ID":"mntsym"}'
err_has 'not a directory'
mounted "$WORK/outside" && { fail "mounted over the outside dir"; umount -l "$WORK/outside"; } || ok
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"mntsym"}'
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"symkid"}'
expect 200 '{"Err":""}' /GraphDriver.Remove -d '{"ID":"symbase"}'
intact "corrupt root"
# a whiteout-format file with garbage: Init refuses, naming it; the server
# keeps serving; repaired, the layers are all there.
cp "$HOME_DIR/whiteout-format" "$WORK/wf.saved"
printf '\377garbage' >"$HOME_DIR/whiteout-format"
kill -TERM "$PID"; wait "$PID"; PID=""
start_plugin
call /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\"}"
err_has 'whiteout-format'
alive
cp "$WORK/wf.saved" "$HOME_DIR/whiteout-format"
expect 200 '{"Err":""}' /GraphDriver.Init -d "{\"Home\":\"$HOME_DIR\"}"
intact "garbage whiteout-format"

# ------------------------------------------------------- idle clients
# Many idle connections (nothing sent, half a header, a body promised and
# never sent) must not keep new requests out, and a client that never
# completes its request header is dropped in bounded time.
cat >"$WORK/idle.py" <<'PY'
import socket, sys, time
path, idle, partial, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
held = []
def conn(data):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    if data:
        s.sendall(data)
    held.append(s)
for _ in range(idle):
    conn(b"")
for _ in range(partial):
    conn(b"POST /GraphDriver.Exists HTTP/1.1\r\nHost: x\r\nContent-Le")
for _ in range(body):
    conn(b"POST /GraphDriver.Exists HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
print("holding", len(held), flush=True)
time.sleep(float(sys.argv[5]))
PY
cat >"$WORK/dropped.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"POST /GraphDriver.Exists HTTP/1.1\r\nHost: x\r\n")
s.settimeout(float(sys.argv[2]))
t = time.time()
try:
    while s.recv(100):
        pass
    print("closed after %d s" % (time.time() - t))
except socket.timeout:
    print("still open after %s s" % sys.argv[2])
PY
ulimit -n 16384 2>/dev/null
python3 "$WORK/dropped.py" "$SOCK" 50 >"$WORK/dropped.out" 2>&1 &
dropped=$!
python3 "$WORK/idle.py" "$SOCK" 1500 300 100 20 >"$WORK/idle.out" 2>&1 &
idle=$!
for _ in $(seq 200); do grep -q holding "$WORK/idle.out" && break; kill -0 $idle 2>/dev/null || break; sleep 0.1; done
grep -q "holding 1900" "$WORK/idle.out" && ok || fail "could not open 1900 connections: $(tail -2 "$WORK/idle.out")"
pids=()
for i in $(seq 20); do
  (raw /GraphDriver.Exists -m 10 -d '{"ID":"keep"}' >"$WORK/busy.$i") &
  pids+=($!)
done
wait "${pids[@]}"
# (curl -m 10: an answer at all means the idle connections did not lock it out)
[ "$(cat "$WORK"/busy.* | sort -u)" = '{"Err":"","Exists":true}' ] && ok ||
  fail "next to 1900 idle connections: $(sort "$WORK"/busy.* | uniq -c | head -3)"
kill $idle 2>/dev/null
wait $idle 2>/dev/null
wait $dropped
grep -q "closed after" "$WORK/dropped.out" && ok || fail "a half-sent request header: $(cat "$WORK/dropped.out")"
intact "idle clients"

if [ "$FAILED" != 0 ]; then
  echo "test-hostile-protocol: FAILED ($CHECKS checks passed)" >&2
  exit 1
fi
echo "test-hostile-protocol: $CHECKS checks passed"
exit 0
