#!/usr/bin/env bash
# Generates include/hotmod.h and include/hotmod_plugin.h with the pinned
# cbindgen. With --check, regenerates into a temporary directory and fails
# (printing the diff) if the checked-in headers are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.4
CBINDGEN=${CBINDGEN:-build/tools/bin/cbindgen}
if ! "$CBINDGEN" --version 2>/dev/null | grep -q " $CBINDGEN_VERSION\$"; then
  echo "installing cbindgen $CBINDGEN_VERSION into build/tools" >&2
  cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION" --root build/tools
  CBINDGEN=build/tools/bin/cbindgen
fi

# Version macros come from the one version in Cargo.toml.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
IFS=. read -r major minor patch <<<"$version"
# (TOML basic-string escapes: \n for newlines, \" for quotes.)
nl='\n' q='\"'
macros="#define HOTMOD_VERSION_MAJOR $major$nl#define HOTMOD_VERSION_MINOR $minor$nl#define HOTMOD_VERSION_PATCH $patch$nl#define HOTMOD_VERSION_STRING $q$version$q"

out=include
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
fi

cfg=$(mktemp)
trap 'rm -f "$cfg"; [ "$out" = include ] || rm -rf "$out"' EXIT
template=$(<cbindgen.toml)
printf '%s\n' "${template//@VERSION_MACROS@/$macros}" >"$cfg"
"$CBINDGEN" --quiet --config "$cfg" --crate hotmod --output "$out/hotmod.h" .
"$CBINDGEN" --quiet --config abi/cbindgen.toml --crate hotmod-abi --output "$out/hotmod_plugin.h" abi

if [ "${1:-}" = "--check" ]; then
  status=0
  for h in hotmod.h hotmod_plugin.h; do
    if ! diff -u "include/$h" "$out/$h"; then
      echo "include/$h is out of date: run scripts/gen-headers.sh" >&2
      status=1
    fi
  done
  [ $status -eq 0 ] && echo "headers up to date"
  exit $status
fi
