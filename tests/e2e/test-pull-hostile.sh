#!/bin/bash
# Hostile and flaky registries (tests/e2e/fake-registry.py): a clear error
# and nothing registered for wrong digests, truncated blobs, endless
# redirects, huge manifests, configs whose diff_ids don't match; success
# for 500s-then-success, a connection cut once (Range resume, or a server
# ignoring Range), a redirect to another host (without leaking the
# credentials there), and bearer-token auth.  A pull killed half-way leaves
# a root dockerd starts on, and a rerun completes it.
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
"$IMGMIGRATE" pull "$FAKE_ADDR/x:t" --root "$ROOT" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1 &
ipid=$!
sleep 0.6
kill -KILL "$ipid"
wait "$ipid" 2>/dev/null
check "killed pull: nothing registered yet" nothing_registered "$ROOT" overlay2 "$FAKE_ADDR/x"
if dockerd_start killed overlay2; then
  check "killed pull: dockerd starts, no image" test -z "$(dk killed images -q)"
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
