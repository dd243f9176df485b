#!/bin/bash
# Authentication against a real docker-registry: htpasswd (Basic) and token
# auth (Bearer, tokens from pull-token-server.py signed with a self-made
# certificate).  Credentials by --username/--password-stdin and from a
# docker config.json; identity tokens (OAuth2 refresh_token POST);
# anonymous tokens; wrong credentials refused.
. "$(dirname "$0")/pull-lib.sh"

pull_init pull-auth
TOKEN_PID=""
trap 'rc=$?; [ -n "$TOKEN_PID" ] && kill "$TOKEN_PID" 2>/dev/null; (exit $rc); pull_exit' EXIT

pull_as ()
{
  local root=$1 ref=$2
  shift 2
  imgm pull "$ref" --root "$root" --driver overlay2 "$@"
}

# ---- Basic (htpasswd)
htpasswd -Bbn u p > "$E2E_WORK/htpasswd" || die "htpasswd"
registry_start "auth:
  htpasswd:
    realm: basic-realm
    path: $E2E_WORK/htpasswd" || die "registry (htpasswd)"
push special e2e/special:v1 --dest-creds u:p || die "push with credentials"
REF=$REGISTRY_ADDR/e2e/special:v1
cfg=$(curl -sf -u u:p -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$REGISTRY_ADDR/v2/e2e/special/manifests/v1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
WANT=$(curl -sf -u u:p "http://$REGISTRY_ADDR/v2/e2e/special/blobs/$cfg" | sha256sum | cut -c1-64)
[ -n "$WANT" ] || die "cannot read the config back"

pull_as "$E2E_WORK/b1" "$REF"
check "basic: no credentials -> exit 1" test $? = 1
check "basic: ... unauthorized, naming the way out" grep -q "unauthorized: authentication required" "$E2E_WORK/imgm.out"
pull_as "$E2E_WORK/b2" "$REF" --username u --password-stdin <<< "wrong"
check "basic: wrong password -> exit 1" test $? = 1
check "basic: ... unauthorized" grep -q "unauthorized" "$E2E_WORK/imgm.out"
check "basic: --username/--password-stdin" pull_as "$E2E_WORK/b3" "$REF" --username u --password-stdin <<< "p"
check "basic: the image ID is the registry's config digest" \
  grep -q "\"sha256:$WANT\"" "$E2E_WORK/b3/image/overlay2/repositories.json"
mkdir -p "$E2E_WORK/dcfg"
printf '{"auths":{"http://%s":{"auth":"%s"}}}\n' "$REGISTRY_ADDR" "$(printf u:p | base64)" > "$E2E_WORK/dcfg/config.json"
check "basic: credentials from config.json (key with a scheme)" \
  env DOCKER_CONFIG="$E2E_WORK/dcfg" "$IMGMIGRATE" pull "$REF" --root "$E2E_WORK/b4" --driver overlay2
printf '{"auths":{"%s":{"identitytoken":"e2e-identity-token"}}}\n' "$REGISTRY_ADDR" > "$E2E_WORK/dcfg/config.json"
env DOCKER_CONFIG="$E2E_WORK/dcfg" "$IMGMIGRATE" pull "$REF" --root "$E2E_WORK/b5" --driver overlay2 \
  > "$E2E_WORK/imgm.out" 2>&1
check "basic: only an identity token for a Basic registry -> exit 1" test $? = 1
check "basic: ... says what is wrong" grep -q "asks for a username and password (Basic)" "$E2E_WORK/imgm.out"

# dockerd on the Basic-auth pulled root: the image runs.
mkdir -p "$E2E_WORK/basic"
mv "$E2E_WORK/b3" "$E2E_WORK/basic/data"
if dockerd_start basic overlay2; then
  check "basic: docker run on the pulled root" \
    test "$(dk basic run --rm --network none "$REF" /bin/busybox echo ok 2>&1)" = ok
  dockerd_stop basic
else
  fail "dockerd on the basic-auth root"
fi

# ---- TLS (self-signed certificate for 127.0.0.1) + htpasswd: as dockerd,
# 127.0.0.0/8 registries are "insecure": https is tried first, unverified.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_WORK/tls.key" -out "$E2E_WORK/tls.crt" \
  -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 > /dev/null 2>&1 || die "openssl tls"
registry_start "  tls:
    certificate: $E2E_WORK/tls.crt
    key: $E2E_WORK/tls.key
auth:
  htpasswd:
    realm: basic-realm
    path: $E2E_WORK/htpasswd" || die "registry (tls)"
skopeo copy -q --dest-tls-verify=false --dest-creds u:p "docker-archive:$(make_image base)" \
  "docker://$REGISTRY_ADDR/e2e/base:v1" >&2 || die "push over tls"
check "tls: pull over https with credentials" \
  pull_as "$E2E_WORK/tls1" "$REGISTRY_ADDR/e2e/base:v1" --username u --password-stdin --debug <<< p
check "tls: the requests went over https" grep -q "GET https://$REGISTRY_ADDR/v2/e2e/base/blobs/" "$E2E_WORK/imgm.out"
check "tls: no plain-http request" bash -c '! grep -q "GET http://" "$1"' _ "$E2E_WORK/imgm.out"

# ---- Bearer (token auth)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$E2E_WORK/tok.key" -out "$E2E_WORK/tok.crt" \
  -days 2 -subj /CN=gr-token > /dev/null 2>&1 || die "openssl"
TPORT=$(free_port)
python3 "$E2E_DIR/pull-token-server.py" "$TPORT" "$E2E_WORK/tok.key" "$E2E_WORK/tok.crt" \
  gr-issuer gr-registry "$E2E_WORK/token.log" 2>> "$E2E_WORK/token.err" &
TOKEN_PID=$!
wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$TPORT/" || die "token server"
registry_start "auth:
  token:
    realm: http://127.0.0.1:$TPORT/token
    service: gr-registry
    issuer: gr-issuer
    rootcertbundle: $E2E_WORK/tok.crt" || die "registry (token)"
push special e2e/special:v1 --dest-creds u:p || die "push special (token)"
push base private/base:v1 --dest-creds u:p || die "push base (token)"

check "bearer: anonymous token for a public repository" \
  pull_as "$E2E_WORK/t1" "$REGISTRY_ADDR/e2e/special:v1"
check "bearer: anonymous token request had no credentials" grep -q "scope=repository%3Ae2e%2Fspecial%3Apull auth=none" "$E2E_WORK/token.log"
pull_as "$E2E_WORK/t2" "$REGISTRY_ADDR/private/base:v1"
check "bearer: private repository without credentials -> exit 1" test $? = 1
check "bearer: ... unauthorized" grep -q "unauthorized" "$E2E_WORK/imgm.out"
check "bearer: private repository with credentials" \
  pull_as "$E2E_WORK/t3" "$REGISTRY_ADDR/private/base:v1" --username u --password-stdin <<< p
check "bearer: token request carried the credentials" grep -q "private%2Fbase%3Apull auth=basic" "$E2E_WORK/token.log"
pull_as "$E2E_WORK/t4" "$REGISTRY_ADDR/private/base:v1" --username u --password-stdin <<< nope
check "bearer: wrong password -> exit 1" test $? = 1
check "bearer: ... incorrect username or password" grep -q "incorrect username or password" "$E2E_WORK/imgm.out"

# docker login's identity token (config.json "identitytoken", next to an
# "auth" of "u:"): traded at the realm by an OAuth2 POST, as dockerd does.
mkdir -p "$E2E_WORK/idcfg"
printf '{"auths":{"%s":{"auth":"%s","identitytoken":"%s"}}}\n' \
  "$REGISTRY_ADDR" "$(printf u: | base64)" e2e-identity-token > "$E2E_WORK/idcfg/config.json"
: > "$E2E_WORK/token.log"
env DOCKER_CONFIG="$E2E_WORK/idcfg" "$IMGMIGRATE" pull "$REGISTRY_ADDR/private/base:v1" \
  --root "$E2E_WORK/t5" --driver overlay2 --debug > "$E2E_WORK/idtok.out" 2>&1
check "bearer: private repository with an identity token from config.json" test $? = 0
check "bearer: ... the identity token is not in the --debug output" \
  bash -c '! grep -q e2e-identity-token "$1"' _ "$E2E_WORK/idtok.out"
check "bearer: ... traded by POST grant_type=refresh_token, no Basic" \
  grep -q "^TOKEN POST /token grant=refresh_token client=docker auth=none" "$E2E_WORK/token.log"
check "bearer: ... and no GET for a token" bash -c '! grep -q "^TOKEN /token" "$1"' _ "$E2E_WORK/token.log"
printf '{"auths":{"%s":{"identitytoken":"stale"}}}\n' "$REGISTRY_ADDR" > "$E2E_WORK/idcfg/config.json"
env DOCKER_CONFIG="$E2E_WORK/idcfg" "$IMGMIGRATE" pull "$REGISTRY_ADDR/private/base:v1" \
  --root "$E2E_WORK/t6" --driver overlay2 > "$E2E_WORK/imgm.out" 2>&1
check "bearer: a refused identity token -> exit 1" test $? = 1
check "bearer: ... says so" grep -q "identity token was refused" "$E2E_WORK/imgm.out"

mkdir -p "$E2E_WORK/bearer"
mv "$E2E_WORK/t3" "$E2E_WORK/bearer/data"
if dockerd_start bearer overlay2; then
  check "bearer: docker run on the pulled root" \
    dk bearer run --rm --network none "$REGISTRY_ADDR/private/base:v1" /bin/busybox true
  dockerd_stop bearer
else
  fail "dockerd on the bearer root"
fi

e2e_finish
