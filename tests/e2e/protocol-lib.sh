# Shared by the plugin protocol tests (test-protocol.sh,
# test-hostile-protocol.sh): the real aufs-graphdriver binary on a temp
# socket with a temp Home, spoken to with curl.  Source it after setting
# PROTO_NAME (the temp dir prefix); it exits 77 when not root.
#
# Environment: PLUGIN_BIN (default: plugin/aufs-graphdriver under
# GR_BUILDDIR, else the current dir, as `make check` runs it).
# GR_FAKE_BACKEND=1 skips the checks of layer contents and mounts (for a
# server build linked against a stand-in backend).

if [ "$(id -u)" != 0 ]; then
  echo "skip: needs root (the driver mounts)" >&2
  exit 77
fi
for tool in curl tar; do
  command -v $tool >/dev/null || { echo "skip: $tool missing" >&2; exit 77; }
done

PLUGIN_BIN=${PLUGIN_BIN:-${GR_BUILDDIR:-$PWD}/plugin/aufs-graphdriver}
[ -x "$PLUGIN_BIN" ] || { echo "FATAL: no plugin binary at $PLUGIN_BIN" >&2; exit 99; }
FAKE=${GR_FAKE_BACKEND:-}

WORK=$(mktemp -d "/tmp/gr-${PROTO_NAME:-protocol}.XXXXXX")
SOCK=$WORK/run/plugins/test.sock
HOME_DIR=$WORK/root/aufs-graphdriver
LOG=$WORK/plugin.log
PID=""
FAILED=0
CHECKS=0

cleanup ()
{
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  fi
  # Anything still mounted below the work dir (deepest first).
  awk -v r="$WORK" 'index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  if [ "$FAILED" != 0 ] || [ -n "${GR_E2E_KEEP:-}" ]; then
    echo "--- plugin log ($LOG) ---" >&2
    tail -n 60 "$LOG" >&2
  fi
  [ -n "${GR_E2E_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

fail () { echo "FAIL: $*" >&2; FAILED=1; }
ok () { CHECKS=$((CHECKS + 1)); }

start_plugin ()
{
  local level=(--log-level debug)
  [ -n "${LOG_LEVEL:-}" ] && level=() # the environment sets it
  "$PLUGIN_BIN" --socket "$SOCK" "${level[@]}" "$@" 2>>"$LOG" &
  PID=$!
  for _ in $(seq 100); do
    # (a stale socket may still be there: wait for an answer)
    curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/Plugin.Activate \
      >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  fail "the plugin did not start"
  exit 1
}

# call ENDPOINT [curl args...]: sets CODE and BODY.
call ()
{
  local ep=$1
  shift
  BODY=$(curl -sS --unix-socket "$SOCK" -o - -w '\n%{http_code}' -X POST \
    -H 'Accept: application/vnd.docker.plugins.v1.2+json' \
    "http://plugin.moby.localhost$ep" "$@" 2>"$WORK/curl.err")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
  BODY=${BODY%$'\n'}
}

# expect CODE BODY ENDPOINT [curl args...]: exact reply.
expect ()
{
  local want_code=$1 want_body=$2
  shift 2
  call "$@"
  if [ "$CODE" != "$want_code" ] || [ "$BODY" != "$want_body" ]; then
    fail "$1 ${*:2}: got $CODE $BODY, want $want_code $want_body"
  else
    ok
  fi
}

# expect_err ENDPOINT [curl args...]: a non-200 status with a non-empty
# {"Err":...}, and the server still answers Activate afterwards.
expect_err ()
{
  call "$@"
  if [ "$CODE" = 200 ] || ! [[ "$BODY" =~ ^\{\"Err\":\"[^\"]+ ]]; then
    fail "$1 ${*:2}: want an error, got $CODE $BODY"
  else
    ok
  fi
  alive
}

alive ()
{
  local b
  b=$(curl -sS --unix-socket "$SOCK" -X POST http://plugin.moby.localhost/Plugin.Activate 2>&1)
  [ "$b" = '{"Implements":["GraphDriver"]}' ] || { fail "server not alive: $b"; exit 1; }
}

json_field () { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" <<<"$BODY"; }
json_int () { sed -n "s/.*\"$1\":\\([0-9]*\\).*/\\1/p" <<<"$BODY"; }

mounted () { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
mounts_in_home () { awk -v r="$HOME_DIR" 'index($5, r "/") == 1' /proc/self/mountinfo | wc -l; }
