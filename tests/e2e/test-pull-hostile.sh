#!/bin/bash
# Hostile and flaky registries (tests/e2e/fake-registry.py): a clear error
# and nothing registered for wrong digests, truncated blobs, endless
# redirects, huge manifests, configs whose diff_ids don't match; success
# for 500s-then-success, a connection cut once (Range resume, or a server
# ignoring Range), a redirect to another host (without leaking the
# credentials there), and bearer-token auth.  A pull killed half-way leaves
# a root dockerd starts on, and a rerun completes it.
# e2e: alone (kills and cancellations timed against a slow registry)
. "$(dirname "$0")/pull-lib.sh"

pull_init pull-hostile
IMG=$(make_image special) || die "mktar special"
n=0

# expect_fail MODE MESSAGE-REGEX
expect_fail ()
{
  local mode=$1 re=$2 root rc
  n=$((n + 1))
  root=$E2E_WORK/root$n
  fake_start "$IMG" "$mode" || die "fake registry $mode"
  timeout 120 "$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$root" --driver overlay2 \
    > "$E2E_WORK/imgm.out" 2>&1
  rc=$?
  log "$mode: $(tail -n1 "$E2E_WORK/imgm.out")"
  check "$mode: exit 1" test "$rc" = 1
  check "$mode: error says /$re/" grep -qE "$re" "$E2E_WORK/imgm.out"
  check "$mode: nothing registered" nothing_registered "$root" overlay2 "$FAKE_ADDR/x"
  LAST_ROOT=$root
}

# expect_ok MODE [imgmigrate args]
expect_ok ()
{
  local mode=$1 root rc
  shift
  n=$((n + 1))
  root=$E2E_WORK/root$n
  fake_start "$IMG" "$mode" || die "fake registry $mode"
  timeout 120 "$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$root" --driver overlay2 "$@" \
    > "$E2E_WORK/imgm.out" 2>&1
  rc=$?
  log "$mode: $(tail -n1 "$E2E_WORK/imgm.out")"
  check "$mode: pull succeeds" test "$rc" = 0
  check "$mode: tagged" grep -q "\"$FAKE_ADDR/x:t\"" "$root/image/overlay2/repositories.json"
  LAST_ROOT=$root
}

expect_fail wrong-digest "digest mismatch"
expect_fail truncated "incomplete, gave up after 5 tries"
expect_fail redirect-loop "more than 10 redirects"
expect_fail huge-manifest "larger than the limit of 4194304 bytes"
expect_fail bad-diffids "diffID"
# The layers before the bad one were verified and may stay (as dockerd);
# the root must still be one dockerd starts on.
BAD_ROOT=$LAST_ROOT

expect_ok flaky
check "flaky: the 500s were retried" grep -q " 500$" "$E2E_WORK/fake.log"
expect_ok truncate-once
check "truncate-once: resumed with Range (206)" grep -q " 206$" "$E2E_WORK/fake.log"
expect_ok no-range
expect_ok redirect-host --username u --password-stdin < <(echo p)
check "redirect-host: blobs fetched from the other host" grep -q "^GET localhost" "$E2E_WORK/fake.log"
check "redirect-host: no Authorization sent to the other host" bash -c '! grep -q "^LEAK" "$1"' _ "$E2E_WORK/fake.log"
expect_ok bearer --username u --password-stdin < <(echo p)
check "bearer: token fetched with credentials" grep -q "^TOKEN .* Basic dTpw" "$E2E_WORK/fake.log"
expect_ok bearer-anon
expect_ok lazy-bearer
check "lazy-bearer: a token was fetched after the repository's challenge" grep -q "^TOKEN" "$E2E_WORK/fake.log"
expect_ok no-head
check "no-head: the manifest was resolved with GET after HEAD's 405" grep -q "^GET .*/manifests/t 200" "$E2E_WORK/fake.log"
expect_fail bearer "unauthorized"

# Credentials from a docker config.json (auths, base64 "u:p").
n=$((n + 1))
fake_start "$IMG" bearer || die "fake registry bearer"
mkdir -p "$E2E_WORK/dcfg"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$FAKE_ADDR" "$(printf u:p | base64)" > "$E2E_WORK/dcfg/config.json"
DOCKER_CONFIG=$E2E_WORK/dcfg "$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$E2E_WORK/root$n" \
  --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1
check "credentials from DOCKER_CONFIG/config.json" test $? = 0

# dockerd starts on the root of the failed bad-diffids pull and shows no image.
mkdir -p "$E2E_WORK/bad"
rm -rf "$E2E_WORK/bad/data"
mv "$BAD_ROOT" "$E2E_WORK/bad/data"
if dockerd_start bad overlay2; then
  check "after a failed pull dockerd lists no image" test -z "$(dk bad images -q)"
  dockerd_stop bad
else
  fail "dockerd does not start on the root of a failed pull"
fi

# Killed half-way (slow registry), then rerun.
n=$((n + 1))
mkdir -p "$E2E_WORK/killed"
ROOT=$E2E_WORK/killed/data
fake_start "$IMG" slow || die "fake registry slow"
# Killed at several moments in a row (the slow registry trickles the
# layers; later runs find some layers already there, a late kill may find
# the pull done).
for delay in 0.2 0.6 1.2 2 3; do
  "$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$ROOT" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1 &
  ipid=$!
  sleep "$delay"
  kill -KILL "$ipid" 2>/dev/null
  wait "$ipid" 2>/dev/null
  log "killed after ${delay}s: $(ls "$ROOT/image/overlay2/layerdb/sha256" 2>/dev/null | wc -l) layers registered"
done
# ... and right after the first layer got registered (in a fresh root; the
# last layer trickles).
fake_start "$IMG" slow-last || die "fake registry slow-last"
ROOT2=$E2E_WORK/killed2
"$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$ROOT2" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1 &
ipid=$!
wait_for 30 bash -c '[ -n "$(ls -A "$1" 2>/dev/null)" ]' _ "$ROOT2/image/overlay2/layerdb/sha256"
kill -KILL "$ipid" 2>/dev/null
wait "$ipid" 2>/dev/null
n1=$(ls "$ROOT2/image/overlay2/layerdb/sha256" | wc -l)
log "killed right after the first registration: $n1 layers registered"
if [ "$n1" -ge 1 ] && [ "$n1" -lt 4 ]; then
  check "killed between layers: no tag" \
    bash -c '! grep -qs "\"$1/x:t\"" "$2"' _ "$FAKE_ADDR" "$ROOT2/image/overlay2/repositories.json"
  check "killed between layers: the rerun reuses the registered layers" \
    bash -c '"$1" pull "$2/x:t" --root "$3" --driver overlay2 | grep -q ": Already exists$"' \
    _ "$IMGMIGRATE" "$FAKE_ADDR" "$ROOT2"
else
  fail "the kill did not land between two layers ($n1 registered)"
fi
fake_start "$IMG" slow || die "fake registry slow"
if dockerd_start killed overlay2; then
  check "killed pulls: dockerd starts" dk killed info
  dockerd_stop killed
else
  fail "dockerd does not start on the root of a killed pull"
fi
fake_start "$IMG" ok || die "fake registry ok"
check "rerun after the kill completes" imgm pull "$FAKE_ADDR/x:t" --root "$ROOT" --driver overlay2
if dockerd_start killed overlay2; then
  check "after the rerun the image runs" \
    test "$(dk killed run --rm --network none "$FAKE_ADDR/x:t" /bin/busybox echo ok 2>&1)" = ok
  dockerd_stop killed
else
  fail "dockerd does not start after the rerun"
fi

e2e_finish
