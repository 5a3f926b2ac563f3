#!/usr/bin/env bash
# ABI check of the built library: its SONAME is libhotmod.so.1, and its
# exported symbols are exactly the ones listed in src/symbols.txt, each bound
# to its listed version node (readelf --dyn-syms -W).
set -euo pipefail
lib=${1:?usage: check-symbols.sh path/to/libhotmod.so}
cd "$(dirname "$0")/.."
status=0

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" != "libhotmod.so.1" ]; then
  echo "SONAME: expected libhotmod.so.1, found '${soname:-none}' in $lib" >&2
  status=1
fi

expected=$(grep -v '^#' src/symbols.txt | awk 'NF { print $1 "@@" $2 }' | sort)
# Defined, non-local dynamic symbols, minus the version-node definitions themselves.
actual=$(readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && $5 != "LOCAL" && NR > 3 && $8 != "" { print $8 }' \
  | grep -v -E '^HOTMOD_[0-9.]+@@HOTMOD_[0-9.]+$' | sort)

if [ "$expected" != "$actual" ]; then
  echo "exported symbols of $lib differ from src/symbols.txt (- expected, + found):" >&2
  diff <(echo "$expected") <(echo "$actual") | grep '^[<>]' | sed 's/^</-/; s/^>/+/' >&2 || true
  status=1
fi
unversioned=$(echo "$actual" | grep -v '@@' || true)
if [ -n "$unversioned" ]; then
  echo "unversioned exports: $unversioned" >&2
  status=1
fi
[ $status -eq 0 ] && echo "ABI ok: SONAME $soname, $(echo "$actual" | wc -l) symbols, all versioned and listed"
exit $status
