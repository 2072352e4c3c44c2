#!/usr/bin/env bash
# Prepare the packages the GPU image lacks (benchmarks/gpu/wheels.txt; CPython 3.12, x86-64
# manylinux) as .whl/site.tar.xz, which git ignores; run from the repository root here, where
# pip reaches PyPI.  Then carry .whl in the device call (see check.sh).
# Why a tarball: the 20 wheels are 62 MB, and with the repository (5.7 MB) over the device
# tool's 64 MiB; installed here for Python 3.12 and packed with xz -9 they are 40 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
wheels=$(mktemp -d)
site=$(mktemp -d)
trap 'rm -rf "$wheels" "$site"' EXIT
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
target=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}")
grep -v '^#' benchmarks/gpu/wheels.txt | grep . | while read -r requirement; do
  python3 -m pip download -q "${target[@]}" -d "$wheels" "$requirement"
done
python3 -m pip install -q --no-index --no-compile "${target[@]}" --target "$site" "$wheels"/*.whl
mkdir -p .whl
rm -f .whl/*
tar -C "$site" -cf - . | xz -9 -T0 > .whl/site.tar.xz
du -sh .whl
