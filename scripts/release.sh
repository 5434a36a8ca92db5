#!/usr/bin/env bash
# Build the release artifact, an npm package tarball (README "Install"):
# prebuilt BPF objects, the compiled JavaScript of src/ (no tests), the
# native addon's sources (built at install against the system libbpf), the
# deploy/ files, and npm-shrinkwrap.json so every install gets the
# dependency versions the tests ran with.
#   scripts/release.sh [OUT_DIR]   (default: release/); prints the tarball's path
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-release}" && cd "${1:-release}" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

say() { printf '[release] %s\n' "$*" >&2; }

say "building BPF objects"
make -s -C bpf
say "compiling TypeScript (src/ only) into a staging directory"
# Not dist/: it holds test builds and whatever else was compiled there before.
npx --no-install tsc -p tsconfig.release.json --outDir "$stage/dist"

mkdir -p "$stage/bpf" "$stage/native" "$stage/scripts" "$stage/docs"
cp package.json README.md binding.gyp "$stage/"
cp bpf/*.o "$stage/bpf/"
cp native/*.cc native/*.h "$stage/native/"
cp scripts/install-native.mjs "$stage/scripts/"
cp -r deploy "$stage/"
cp docs/*.md "$stage/docs/"
cp package-lock.json "$stage/npm-shrinkwrap.json"

say "packing"
tarball=$(cd "$stage" && npm pack --silent --pack-destination "$out")
say "$(tar -tzf "$out/$tarball" | wc -l) files in $tarball"
echo "$out/$tarball"
