#!/bin/sh
# collect-runtime.sh BUILD_DIR OUT_DIR "REQUIRED BINARIES"
# Run in the build stage of deploy/docker/Dockerfile*: copies the dsv3 binaries found in
# BUILD_DIR to OUT_DIR/bin, fails if a required one is missing, and writes
# OUT_DIR/runtime-packages.txt, the Debian/Ubuntu packages that own the shared libraries
# they link (ldd, then dpkg -S; the runtime stage installs exactly those).
set -eu
build="$1"; out="$2"; required="$3"
mkdir -p "$out/bin"
for b in dsv3-gateway dsv3-attention-worker dsv3-expert-worker dsv3-generate dsv3-mkmodel dsv3-tokenize; do
  f=$(find "$build" -type f -name "$b" -perm -u+x | head -n 1)
  if [ -n "$f" ]; then
    install -m 0755 "$f" "$out/bin/$b"
  fi
done
missing=""
for b in $required; do
  [ -x "$out/bin/$b" ] || missing="$missing $b"
done
if [ -n "$missing" ]; then
  echo "collect-runtime: not built:$missing (build a revision that has them, or pass --build-arg REQUIRED_BINARIES=...)" >&2
  exit 1
fi
for f in "$out"/bin/*; do ldd "$f"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
while read -r lib; do
  real=$(readlink -f "$lib")
  for cand in "$lib" "$real" "${real#/usr}"; do
    if pkg=$(dpkg -S "$cand" 2>/dev/null); then
      echo "$pkg" | head -n 1 | cut -d: -f1
      break
    fi
  done
done | sort -u > "$out/runtime-packages.txt"
echo "collect-runtime: $(ls "$out/bin" | tr '\n' ' ')" >&2
echo "collect-runtime: runtime packages: $(tr '\n' ' ' < "$out/runtime-packages.txt")" >&2
