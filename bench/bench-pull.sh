#!/bin/bash
# Pull benchmark: the same image from the same local docker-registry, one
# pull at a time, RUNS runs each (fresh destination every run), medians:
#   imgmigrate pull   into a fresh overlay2 root (stopped dockerd)
#   docker pull       on a fresh private dockerd (overlay2), pull timed only
#   skopeo copy       to a fresh dir: (download + verify, no extraction)
# and the ratios.  Target (issue 4): imgmigrate <= 0.7 x docker pull.
#
#   bench/bench-pull.sh [IMAGE...]     IMAGE: debian (default), big, special
#   RUNS=5  GR_BUILDDIR=<build dir>  IMGMIGRATE=<binary>
#   CLEAN_EACH_RUN=1   delete each destination right after its run (the old
#                      method; see "Destinations go only now" below)
. "$(dirname "$0")/../tests/e2e/pull-lib.sh"

RUNS=${RUNS:-5}
IMAGES=("$@")
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=(debian)
pull_init bench-pull
export GR_E2E_NO_DEBIAN=""
registry_start || die "registry"

# image_source NAME: a docker-archive source for skopeo.
image_source ()
{
  case $1 in
    debian)
      local t
      t=$(image_tar debian)
      if [ ! -s "$t" ]; then
        dockerd_start build overlay2 || return 1
        build_images build || return 1
        dockerd_stop build
      fi
      echo "docker-archive:$t:e2e/debian:latest"
      ;;
    *)
      echo "docker-archive:$(make_image "$1")"
      ;;
  esac
}

now () { date +%s.%N; }
median () { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for img in "${IMAGES[@]}"; do
  src=$(image_source "$img") || die "image $img"
  skopeo copy -q --dest-tls-verify=false "$src" "docker://$REGISTRY_ADDR/bench/$img:v1" || die "push $img"
  REF=$REGISTRY_ADDR/bench/$img:v1
  size=$(du -sh "$E2E_WORK/registry/root" | cut -f1)
  log "image $img: registry holds $size"
  : > "$E2E_WORK/t-imgm"
  sync
  sleep 6 # past the 5 s window of whatever was deleted before (see below)
  : > "$E2E_WORK/t-docker"
  : > "$E2E_WORK/t-skopeo"
  for ((i = 1; i <= RUNS; i++)); do
    sync
    root=$E2E_WORK/imgm-$i
    t0=$(now)
    "$IMGMIGRATE" pull -q "$REF" --root "$root" --driver overlay2 > /dev/null || die "imgmigrate pull"
    t1=$(now)
    echo "$t1 - $t0" | bc >> "$E2E_WORK/t-imgm"
    [ -n "${CLEAN_EACH_RUN:-}" ] && rm -rf "$root"

    sync
    dockerd_start "dp$i" overlay2 > /dev/null 2>&1 || die "dockerd dp$i"
    t0=$(now)
    dk "dp$i" pull -q "$REF" > /dev/null || die "docker pull"
    t1=$(now)
    echo "$t1 - $t0" | bc >> "$E2E_WORK/t-docker"
    dockerd_stop "dp$i"
    [ -n "${CLEAN_EACH_RUN:-}" ] && rm -rf "$E2E_WORK/dp$i"

    sync
    d=$E2E_WORK/skopeo-$i
    t0=$(now)
    skopeo copy -q --src-tls-verify=false "docker://$REF" "dir:$d" || die "skopeo copy"
    t1=$(now)
    echo "$t1 - $t0" | bc >> "$E2E_WORK/t-skopeo"
    [ -n "${CLEAN_EACH_RUN:-}" ] && rm -rf "$d"
    log "run $i: imgmigrate $(tail -n1 "$E2E_WORK/t-imgm") s, docker $(tail -n1 "$E2E_WORK/t-docker") s, skopeo $(tail -n1 "$E2E_WORK/t-skopeo") s"
  done
  # Destinations go only now: on ext4 without a journal, inodes freed in
  # the last 5 s (300 s while their table block is dirty) are skipped one
  # by one when allocating, so deleting one run's root would slow down
  # whichever tool runs next; neither tool deletes anything while pulling.
  for ((i = 1; i <= RUNS; i++)); do
    rm -rf "$E2E_WORK/imgm-$i" "$E2E_WORK/dp$i" "$E2E_WORK/skopeo-$i"
  done
  mi=$(median < "$E2E_WORK/t-imgm")
  md=$(median < "$E2E_WORK/t-docker")
  ms=$(median < "$E2E_WORK/t-skopeo")
  printf '\n%s (%s in the registry), medians of %d runs:\n' "$img" "$size" "$RUNS"
  printf '  imgmigrate pull  %7.3f s\n' "$mi"
  printf '  docker pull      %7.3f s\n' "$md"
  printf '  skopeo copy dir  %7.3f s\n' "$ms"
  printf '  imgmigrate / docker pull = %.2f   imgmigrate / skopeo = %.2f\n\n' \
    "$(echo "$mi / $md" | bc -l)" "$(echo "$mi / $ms" | bc -l)"
done
e2e_finish
