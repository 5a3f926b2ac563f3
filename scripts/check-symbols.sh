#!/usr/bin/env bash
# ABI check of the built library: its SONAME is libhotmod.so.1; its exported
# symbols are exactly the ones listed in src/symbols.txt, each bound to its
# listed version node (readelf --dyn-syms -W); and every symbol of the
# released HOTMOD_1.0 ABI (the frozen list c-tests/abi-1.0/symbols.txt) is
# still listed, and exported, at HOTMOD_1.0 — none moved or gone, none added
# to that node. New exports go under a later node (HOTMOD_1.1, ...), which
# src/symbols.txt introduces by listing its first symbol (see
# src/symbol_list.rs).
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

# The released 1.0 ABI, frozen: the same set at HOTMOD_1.0, in the list and in the library.
frozen=$(grep -v '^#' c-tests/abi-1.0/symbols.txt | awk 'NF { print $1 "@@HOTMOD_1.0" }' | sort)
for what in listed exported; do
  if [ $what = listed ]; then have=$expected; else have=$actual; fi
  now=$(echo "$have" | grep '@@HOTMOD_1\.0$' || true)
  if [ "$frozen" != "$now" ]; then
    echo "HOTMOD_1.0 $what in ${lib##*/} differs from the released ABI (c-tests/abi-1.0/symbols.txt):" >&2
    for s in $(comm -23 <(echo "$frozen") <(echo "$now")); do
      sym=${s%@@*}
      where=$(echo "$have" | grep "^$sym@" || true)
      found=${where:+at ${where#*@@}}
      echo "  $sym: expected at HOTMOD_1.0, found ${found:-nowhere}" >&2
    done
    for s in $(comm -13 <(echo "$frozen") <(echo "$now")); do
      echo "  ${s%@@*}: added to HOTMOD_1.0, which is released: list it under the newest node" >&2
    done
    status=1
  fi
done

[ $status -eq 0 ] && echo "ABI ok: SONAME $soname, $(echo "$actual" | wc -l) symbols, all versioned and listed," \
  "the $(echo "$frozen" | wc -l) HOTMOD_1.0 symbols kept"
exit $status
