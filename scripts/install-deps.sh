#!/usr/bin/env bash
# Installs the system tools `make test` and `make demo` need on a fresh
# Debian machine, skipping what is already there. Python and Node packages
# are installed by the bindings' own targets (a virtualenv, npm ci).
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
# Go plugins (sdk/go, examples/go-*): Debian's Go toolchain, standard library only.
command -v go >/dev/null || need+=(golang-go)
command -v readelf >/dev/null || need+=(binutils)
command -v valgrind >/dev/null || need+=(valgrind)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
