#!/bin/sh
# Build and run the libFuzzer targets of tests/fuzz/ (not part of `make check`).
#
#   tests/fuzz/fuzz.sh build                  build fuzz-{apply,tarsplit,manifest}
#   tests/fuzz/fuzz.sh run TARGET [SECONDS]   fuzz one target (default 120 s)
#   tests/fuzz/fuzz.sh all [SECONDS]          every target in turn
#   tests/fuzz/fuzz.sh repro TARGET FILE      run one input (e.g. a crash-* artifact)
#
# `make fuzz` in a build dir runs `all`.  Needs clang with libFuzzer
# (Debian: apt-get install clang libclang-rt-14-dev) and root for the
# apply target, which runs chrooted in a private mount namespace so that a
# write through an absolute path is caught too.
# Environment: FUZZ_DIR (work dir, default $BUILDDIR/fuzz), BUILDDIR (a
# configured build dir holding config.h, default the current dir), CC.
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILDDIR=${BUILDDIR:-$(pwd)}
FUZZ_DIR=${FUZZ_DIR:-$BUILDDIR/fuzz}
CC=${CC:-clang}
TARGETS="apply tarsplit manifest"

die () { echo "fuzz.sh: $*" >&2; exit 1; }

build () {
  [ -f "$BUILDDIR/config.h" ] || die "no config.h in $BUILDDIR: run configure there or set BUILDDIR"
  command -v "$CC" >/dev/null || die "$CC not found (apt-get install clang libclang-rt-14-dev)"
  mkdir -p "$FUZZ_DIR/obj"
  pkgs="jansson libarchive libcurl openssl zlib mount"
  # optional ones the library may use (as configure finds them)
  for p in libzstd; do pkg-config --exists "$p" && pkgs="$pkgs $p"; done
  cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I$BUILDDIR -iquote $SRCDIR/driver -D_GNU_SOURCE $(pkg-config --cflags $pkgs)"
  libs="$(pkg-config --libs $pkgs) -lpthread"
  objs=
  for src in "$SRCDIR"/driver/*.c; do
    o="$FUZZ_DIR/obj/$(basename "$src" .c).o"
    if [ ! -f "$o" ] || [ "$src" -nt "$o" ]; then
      # shellcheck disable=SC2086
      $CC $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$o"
    fi
    objs="$objs $o"
  done
  for t in $TARGETS; do
    # shellcheck disable=SC2086
    $CC $cflags -fsanitize=fuzzer "$SRCDIR/tests/fuzz/fuzz-$t.c" $objs $libs -o "$FUZZ_DIR/fuzz-$t"
  done
  echo "built $(for t in $TARGETS; do printf '%s ' "$FUZZ_DIR/fuzz-$t"; done)"
}

seeds () {
  jail="$FUZZ_DIR/jail"
  mkdir -p "$jail/corpus" "$jail/artifacts"
  if [ ! -d "$jail/seeds" ]; then
    python3 "$SRCDIR/tests/fuzz/make-seeds.py" "$jail/seeds"
  fi
}

run () {
  t=$1; secs=${2:-120}
  [ -x "$FUZZ_DIR/fuzz-$t" ] || build
  seeds
  jail="$FUZZ_DIR/jail"
  mkdir -p "$jail/corpus/$t"
  seed=$t
  [ "$t" = manifest ] && seed=manifest
  cd "$jail"
  set -- -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -artifact_prefix="artifacts/$t-" \
    -print_final_stats=1 "corpus/$t" "seeds/$seed"
  [ "$t" = manifest ] && set -- "$@" seeds/config
  [ "$t" = apply ] && set -- -max_len=65536 "$@"
  if [ "$t" = apply ]; then
    [ "$(id -u)" = 0 ] || die "the apply target needs root (chroot, mknod, chown)"
    GR_FUZZ_JAIL="$jail" "$FUZZ_DIR/fuzz-$t" "$@"
  else
    "$FUZZ_DIR/fuzz-$t" "$@"
  fi
}

case "${1:-all}" in
  build) build ;;
  run) shift; [ $# -ge 1 ] || die "run TARGET [SECONDS]"; build; run "$@" ;;
  all) build; for t in $TARGETS; do (run "$t" "${2:-120}"); done ;;
  repro) shift; [ $# -eq 2 ] || die "repro TARGET FILE"; build
         f=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
         if [ "$1" = apply ]; then
           seeds; cp "$f" "$FUZZ_DIR/jail/repro-input"
           cd "$FUZZ_DIR/jail" && GR_FUZZ_JAIL="$FUZZ_DIR/jail" "$FUZZ_DIR/fuzz-apply" repro-input
         else
           "$FUZZ_DIR/fuzz-$1" "$f"
         fi ;;
  *) die "usage: fuzz.sh build|run TARGET [SECONDS]|all [SECONDS]|repro TARGET FILE" ;;
esac
