#!/bin/bash
# docker run on the daemon under test sees the right files: fixed
# expectations for each test image, and the same output as on overlay2 for
# a stat of every file.
. "$(dirname "$0")/lib.sh"
e2e_init run
start_pair

# One long-running container per image and daemon; the checks exec in it
# (much faster than a container per check). Without a command, a check runs
# a fresh container with the image's CMD.
declare -A CTR
in_ctr ()
{
  local d=$1 img=$2
  shift 2
  if [ $# -eq 0 ]; then
    dk "$d" run --rm --network none "$img"
    return
  fi
  dk "$d" exec "${CTR[$d.$img]}" "$@"
}
# ctr_start DAEMON IMAGE: the long-running container, started in the main
# shell (in_ctr runs in command substitutions, whose assignments are lost).
ctr_start ()
{
  [ -n "${CTR[$1.$2]:-}" ] && return 0
  CTR[$1.$2]=$(dk "$1" run -d --network none "$2" sleep 3600)
}

# expect IMAGE WANT CMD...: output of CMD equals WANT, on both daemons.
expect ()
{
  local img=$1 want=$2 d got rc=0
  shift 2
  for d in ov pl; do
    [ $# -eq 0 ] || ctr_start "$d" "$img" || return 1
    got=$(in_ctr "$d" "$img" "$@" 2>&1)
    if [ "$got" != "$want" ]; then
      log "$d: $img $*: got '$got', want '$want'"
      rc=1
    fi
  done
  return $rc
}

# same IMAGE CMD...: output identical on both daemons (and not empty).
same ()
{
  local img=$1
  shift
  ctr_start ov "$img" && ctr_start pl "$img" || return 1
  in_ctr ov "$img" "$@" > "$E2E_WORK/ov.out" 2>&1 || { log "ov: $img $* failed"; return 1; }
  in_ctr pl "$img" "$@" > "$E2E_WORK/pl.out" 2>&1 || { log "pl: $img $* failed"; cat "$E2E_WORK/pl.out" >&2; return 1; }
  [ -s "$E2E_WORK/ov.out" ] || return 1
  same_file "$E2E_WORK/ov.out" "$E2E_WORK/pl.out" "outputs of $img $*"
}

S=e2e/special
# (the link count of a directory is left out: overlayfs reports 1 for merged dirs)
STAT="find / -xdev ! -path /proc ! -path /sys ! -type d -exec stat -c '%n|%f|%u|%g|%s|%h|%t:%T|%N' {} + | sort; find / -xdev -type d -exec stat -c '%n|%f|%u|%g' {} + | sort"
check "special: modified file" expect $S "hello again" cat /data/hello
check "special: whiteouts of a file, a dir, a symlink, an applet" expect $S "gone" \
  sh -c 'test ! -e /data/file-to-delete && test ! -e /data/todelete/a && test ! -e /data/todelete/inner && test ! -L /data/dangling && test ! -e /bin/vi && echo gone'
check "special: dir recreated after its whiteout" expect $S "reborn" ls /data/todelete
check "special: opaque dir" expect $S "c" ls /data/opq
check "special: opaque dir in the same layer as its content" expect $S "new" ls /data/opq2
check "special: recreated dir" expect $S "y" ls /data/recreate
check "special: file became a dir, dir became a file" expect $S "z now a file" sh -c 'echo $(ls /data/f2d) $(cat /data/d2f)'
check "special: hard links share an inode" expect $S "3 yes" \
  sh -c 'echo $(stat -c %h /data/hl-a) $([ $(stat -c %i /data/hl-a) = $(stat -c %i /data/sub/hl-c) ] && echo yes)'
check "special: link broken by a later layer" expect $S "modified, link broken|will be modified|no" \
  sh -c 'echo "$(cat /data/hl-x)|$(cat /data/hl-y)|$([ $(stat -c %i /data/hl-x) = $(stat -c %i /data/hl-y) ] && echo yes || echo no)"'
check "special: devices and fifo" expect $S "1:3 4:9 7:7 fifo" \
  sh -c 'echo $(stat -c %t:%T /data/null) $(stat -c %t:%T /data/tty9) $(stat -c %t:%T /data/loop7) $(stat -c %F /data/fifo)'
check "special: modes" expect $S "0 4755 2755 1777 0 751" \
  sh -c 'echo $(stat -c %a /data/mode000 /data/setuid /data/setgid /data/sticky /data/dir000 /data/chmod)'
check "special: big uid/gid" expect $S "100000:200000 2000000:70000 65536:65537" \
  sh -c 'echo $(stat -c %u:%g /data/bigid /data/bigid2 /data/bigdir)'
check "special: symlinks" expect $S "/bin/busybox ../bin/busybox sub self deep" \
  sh -c 'echo $(for f in abs rel dirlink self; do readlink /data/$f; done) $(ls /data/dirlink/ | head -n1)'
check "special: long and non-ASCII names" expect $S "255-byte name long path ünïcödé space" \
  sh -c 'echo $(cat /data/nnn* /data/d*/e* /data/ü* "/data/with space and '"'"'quote'"'"'")'
check "special: stat of every file same as overlay2" same $S sh -c "$STAT"
check "special: copy-up in the container" expect $S "changed|a b" \
  sh -c 'echo changed > /data/hl-a && rm /data/opq/c && echo a > /data/opq/a && touch /data/opq/b && echo "$(cat /data/hl-b)|$(echo $(ls /data/opq))" | sed "s/linked content/changed/"'
check "deep: 125-layer image runs" expect e2e/deep "layer 124"
check "deep: whiteouts across 125 layers same as overlay2" same e2e/deep sh -c 'ls /layers /layers/*/; ls /layers | wc -l'
check "built: CMD of the built image" expect e2e/built "three
copied by docker build"
check "built: stat of every file same as overlay2" same e2e/built sh -c "$STAT"
if image_ok ov e2e/debian; then
  check "debian: runs bash, dpkg, apt" expect e2e/debian "70000 big hello ok" \
    bash -c 'echo $(id -u big) $(stat -c %U /home/big/hello) $(cat /home/big/hello) $(dpkg -s dpkg >/dev/null && apt-get --version >/dev/null && echo ok)'
  check "debian: dpkg database same as overlay2" same e2e/debian bash -c 'dpkg -l; dpkg --verify; ls /usr/share/doc /var/lib/dpkg/info'
  check "debian: stat of every file same as overlay2" same e2e/debian sh -c "find / -xdev ! -path '/proc/*' ! -path '/sys/*' ! -path /etc/hostname ! -path /etc/hosts ! -path /etc/resolv.conf \( -type d -printf '%p|%m|%U|%G|%y\n' \) -o -printf '%p|%m|%U|%G|%s|%n|%y|%l\n' | sort"
fi
for c in "${!CTR[@]}"; do
  dk "${c%%.*}" rm -f "${CTR[$c]}" >/dev/null
done
assert_no_mounts pl
e2e_finish
