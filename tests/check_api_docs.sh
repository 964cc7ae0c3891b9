#!/usr/bin/env bash
# Every exported function of libqerr appears in docs/api.md.
#   usage: tests/check_api_docs.sh BUILD_DIR
# The list of functions is the union of the dynamic symbols libqerr.so
# defines (nm -D) and the QERR_API declarations of the public headers, so a
# function is caught whether it was added to a header or only to the library.
# Exits non-zero and names every undocumented function.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$1
[ -d "$build" ] || build="$root/$1"
lib="$build/libqerr.so"
doc="$root/docs/api.md"
[ -f "$lib" ] || { echo "check_api_docs: no $lib (build the library first)" >&2; exit 2; }
[ -f "$doc" ] || { echo "check_api_docs: $doc is missing" >&2; exit 1; }

symbols=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWi]$/ && $3 ~ /^qerr_/ {print $3}')
declared=$(grep -hE '^QERR_API ' "$root/include/qerr.h" "$root"/include/qerr/*.h \
           | sed -E 's/\(.*//; s/.*[ *]//' )
names=$(printf '%s\n%s\n' "$symbols" "$declared" | sed '/^$/d' | sort -u)

missing=0
count=0
for name in $names; do
  count=$((count + 1))
  # documented = the name followed by "(" somewhere in the reference
  if ! grep -qE "(^|[^A-Za-z0-9_])${name}\(" "$doc"; then
    echo "check_api_docs: $name is exported but not documented in docs/api.md" >&2
    missing=$((missing + 1))
  fi
done
for name in $declared; do
  if ! grep -qx "$name" <<<"$symbols"; then
    echo "check_api_docs: $name is declared QERR_API but $lib does not export it" >&2
    missing=$((missing + 1))
  fi
done
if [ "$count" -lt 20 ]; then
  echo "check_api_docs: only $count functions found; is $lib really libqerr?" >&2
  exit 1
fi
if [ "$missing" -gt 0 ]; then
  echo "check_api_docs: $missing problem(s)" >&2
  exit 1
fi
echo "check_api_docs: all $count exported functions are documented"
