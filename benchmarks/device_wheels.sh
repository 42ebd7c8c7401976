#!/usr/bin/env bash
# Snakemake and what it needs, as wheels for the device machine's Python (3.12, x86-64), into .whl/ (ignored
# by git), for benchmarks/device_check.sh: the device has no network and no snakemake. Run here, where pip
# reaches the package registries; about 26 MB. Pure-Python wheels are built or fetched by `pip wheel`; the
# compiled ones are fetched again for CPython 3.12; packages the device's image already has are dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
VERSION=$(python -c "import snakemake; print(snakemake.__version__)")
python -m pip wheel -q "snakemake==$VERSION" -w .whl
# already in the device's image (/work/.library/device/KINDS.md): keep one version of each
for name in attrs certifi charset_normalizer idna jinja2 markupsafe packaging psutil pyyaml requests \
        typing_extensions urllib3 wrapt; do
    rm -f .whl/"$name"-*.whl
done
for wheel in .whl/*-cp3[0-9]*-cp3[0-9]*-*.whl; do  # compiled for this Python: fetch CPython 3.12's
    [ -e "$wheel" ] || continue
    base=$(basename "$wheel")
    spec="${base%%-*}==$(echo "$base" | cut -d- -f2)"
    rm -f "$wheel"
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
        -d .whl "$spec"
done
ls .whl | wc -l | xargs echo "wheels:" && du -sh .whl
