#!/bin/sh
# Build the directory `docker plugin create` takes (config.json + rootfs/)
# from the built aufs-graphdriver binary: the binary, exactly the shared
# libraries ldd resolves for it, the dynamic loader, a few /etc files and the
# mount points the plugin's config.json uses.  No registry, no network.
#
#   build-rootfs.sh [--strip] BINARY CONFIG.JSON OUTDIR
#
# OUTDIR is replaced: OUTDIR/config.json and OUTDIR/rootfs/.  Then, as root:
#   docker plugin create aufs-graphdriver OUTDIR
#   docker plugin enable aufs-graphdriver
set -eu

strip_bin=no
if [ "${1:-}" = --strip ]; then
  strip_bin=yes
  shift
fi
if [ $# -ne 3 ]; then
  echo "usage: $0 [--strip] BINARY CONFIG.JSON OUTDIR" >&2
  exit 2
fi
bin=$1
config=$2
out=$3

die () { echo "build-rootfs.sh: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin: not an executable (run make first)"
[ -f "$config" ] || die "$config: no such file"
case "$out" in
  "" | / ) die "refusing OUTDIR '$out'" ;;
esac

# The entrypoint named in config.json must be the binary we put in.
entry=$(sed -n 's/.*"entrypoint"[^[]*\[[[:space:]]*"\([^"]*\)".*/\1/p' "$config" | head -n 1)
[ -n "$entry" ] || die "$config: no entrypoint"

rootfs=$out/rootfs
rm -rf "$out"
mkdir -p "$rootfs"

# Copy FILE (following symlinks) to the same absolute path below rootfs.
copy_in ()
{
  src=$1
  dst=$rootfs$src
  [ -e "$dst" ] && return 0
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
  chmod 0755 "$dst"
}

cp -L "$bin" "$rootfs$entry"
chmod 0755 "$rootfs$entry"
if [ "$strip_bin" = yes ]; then
  strip --strip-unneeded "$rootfs$entry"
fi

# ldd prints "libx.so.1 => /path/libx.so.1 (0x...)" for each library and
# "/lib64/ld-linux-x86-64.so.2 (0x...)" for the loader; linux-vdso has no
# file.  A static binary needs nothing.
nlibs=0
if libs=$(LC_ALL=C ldd "$bin" 2>&1); then
  if printf '%s\n' "$libs" | grep -q 'not found'; then
    printf '%s\n' "$libs" >&2
    die "ldd: a library of $bin is missing"
  fi
  for f in $(printf '%s\n' "$libs" | awk '
      $2 == "=>" && $3 ~ /^\// { print $3; next }
      $1 ~ /^\// { print $1 }'); do
    copy_in "$f"
    nlibs=$((nlibs + 1))
  done
  [ "$nlibs" -gt 0 ] || die "ldd listed no libraries for the dynamic binary $bin"
elif ! printf '%s\n' "$libs" | grep -q -e 'not a dynamic executable' -e 'statically linked'; then
  printf '%s\n' "$libs" >&2
  die "ldd $bin failed"
fi

# Mount points: the propagated mount, the plugin socket dir, and what runc
# and dockerd's init layer mount over.
for d in data run/docker/plugins proc sys dev etc tmp; do
  mkdir -p "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"

# Minimal /etc: names for uid/gid 0 (log lines, libmount), empty files
# dockerd bind-mounts or rewrites, and mtab like every Linux system has.
printf 'root:x:0:0:root:/:/nonexistent\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
: > "$rootfs/etc/hosts"
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"
ln -s /proc/self/mounts "$rootfs/etc/mtab"

# The C.UTF-8 locale, if the host has it, for UTF-8 file names in tar headers.
for l in /usr/lib/locale/C.utf8 /usr/lib/locale/C.UTF-8; do
  if [ -d "$l" ]; then
    mkdir -p "$rootfs$(dirname "$l")"
    cp -R "$l" "$rootfs$l"
    break
  fi
done

cp "$config" "$out/config.json"

echo "build-rootfs.sh: $out: $entry + $nlibs libraries, $(du -sk "$rootfs" | cut -f1) KiB"

# When we can, check that the binary starts inside its rootfs alone.
if [ "$(id -u)" = 0 ] && command -v chroot > /dev/null; then
  if ! timeout 20 chroot "$rootfs" "$entry" --version > /dev/null; then
    die "$entry does not start inside $rootfs (a library missing?)"
  fi
fi
