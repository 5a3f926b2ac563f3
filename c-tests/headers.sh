#!/bin/sh
# Header hygiene checks, run by `make headers`:
#  - hotmod.h and hotmod_plugin.h each compile on their own and when included
#    twice (and hotmod.h after hotmod_plugin.h), as strict C11 and as C++17;
#  - a plugin written in C++ with HOTMOD_PLUGIN_ENTRY exports the entry
#    symbol under its C name, "hotmod_plugin_v1".
# Usage: headers.sh INCLUDE_DIR OUT_DIR. Prints "N passed, M failed".
set -u
inc=$1 out=$2
here=$(dirname "$0")/headers
CC=${CC:-cc} CXX=${CXX:-g++}
cstrict="-std=c11 -Wall -Wextra -Wpedantic -Werror"
cxxstrict="-std=c++17 -Wall -Wextra -Wpedantic -Werror"
mkdir -p "$out"
pass=0 fail=0

run() { # run DESCRIPTION COMMAND...
  what=$1
  shift
  if log=$("$@" 2>&1); then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL headers: $what" >&2
    echo "$log" | head -n 12 | sed 's/^/    /' >&2
  fi
}

for tu in hotmod_alone hotmod_twice plugin_alone plugin_twice; do
  run "$tu.c as C11" $CC $cstrict -I"$inc" -c "$here/$tu.c" -o "$out/$tu.c.o"
  run "$tu.cpp as C++17" $CXX $cxxstrict -I"$inc" -c "$here/$tu.cpp" -o "$out/$tu.cpp.o"
done

run "C++ plugin builds" $CXX $cxxstrict -I"$inc" -shared -fPIC -fvisibility=hidden "$here/plugin.cpp" -o "$out/libcpp.so"
if [ -f "$out/libcpp.so" ]; then
  syms=$(nm -D --defined-only "$out/libcpp.so" | awk '{print $3}')
  run "C++ plugin exports 'hotmod_plugin_v1' unmangled (HOTMOD_PLUGIN_ENTRY lacks extern \"C\"; found: $(echo $syms))" \
    sh -c "echo '$syms' | grep -qx 'hotmod_plugin_v1'"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
