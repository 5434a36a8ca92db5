#!/usr/bin/env bash
# Installs what routeshift needs on a Debian 12 host and builds it:
# apt packages (when missing), npm dependencies (npm ci), the BPF objects,
# the native addon and the TypeScript. Mounts bpffs when missing.
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

# Debian packages, by what needs them.
APT_PACKAGES=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config   # BPF objects + libbpf
  make g++ python3                                         # node-gyp (native addon)
  bpftool iproute2 ethtool iputils-ping                    # map dumps, netns topologies
  prometheus                                               # the real scraper in tests
  bird2                                                    # BGP speaker of --announce bgp (and its e2e test)
  systemd curl                                             # the unit's systemd-analyze checks; API calls inside test netns
  openssl                                                  # the TLS tests make their own CA and certificates
  etcd-server                                              # the desired-state store of fleet mode (its tests start one)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "routeshift needs these Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js 20.5+ is required by the dependencies (Debian 12's own nodejs is 18).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  echo "routeshift needs Node.js 20.5 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm dependencies: install when absent or when the lock file changed.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi

say "building BPF objects, native addon, TypeScript"
make -s -C bpf
make -s -C bpf/test
make -s -C bench
if [[ ! -f build/Makefile ]]; then
  npx --no-install node-gyp configure --loglevel=error >/dev/null
fi
npx --no-install node-gyp build --loglevel=error >/dev/null
npx --no-install tsc -p tsconfig.json

if [[ $(id -u) -eq 0 ]] && ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
say "ready"
