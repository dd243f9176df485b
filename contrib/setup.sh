#!/bin/bash
# Install everything graphroot needs to build and to run all of its tests on
# Debian 12 (run as root). Skips apt entirely when all is already there.
# Package installs never start the system's docker service (policy-rc.d).
set -euo pipefail

PACKAGES=(
  # build
  autoconf automake libtool pkg-config gcc make
  libcurl4-openssl-dev libjansson-dev libssl-dev zlib1g-dev libarchive-dev
  libmount-dev libmicrohttpd-dev libcunit1-dev libzstd-dev
  # end-to-end tests and the demo
  docker.io docker-registry skopeo busybox-static debootstrap python3 attr jq
  apache2-utils curl util-linux procps
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the system dockerd (and any other service) from starting on install:
# the tests start private daemons of their own.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}" < /dev/null
