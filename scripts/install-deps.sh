#!/usr/bin/env bash
# Installs what libqerr needs to build and test on Debian 12 (apt-get), only
# when something is missing. Safe to run again.
set -euo pipefail

# libpcre2-dev and libutf8proc-dev: the tokenizers' regexes and Unicode normal forms.
pkgs=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev zlib1g-dev libcmocka-dev
      libpcre2-dev libutf8proc-dev python3 python3-numpy python3-pytest python3-venv)
# Rust bindings: use an existing toolchain if there is one, else Debian's.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  pkgs+=(cargo)
fi
# libFuzzer targets are built with clang when it is there.
[ "${QERR_WITH_FUZZ:-1}" = 1 ] && pkgs+=(clang)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
