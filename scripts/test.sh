#!/usr/bin/env bash
# The whole test suite: sets up what is missing, then runs every tap test
# and ends with the plain summary line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

# Tests touch the kernel (BPF, network namespaces) and need root.
if [[ $(id -u) -ne 0 ]]; then
  echo "the tests load BPF programs and create network namespaces: run them as root" >&2
  exit 1
fi

files=("$@")
if ((${#files[@]} == 0)); then
  mapfile -t files < <(find dist/test -name '*.test.js' | sort)
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx --no-install tap --disable-coverage --reporter=tap --jobs=2 --timeout=900 "${files[@]}" | tee "$log"
status=${PIPESTATUS[0]}
node scripts/tap-summary.mjs < "$log"
exit "$status"
