#!/usr/bin/env bash
# Fetch, on this machine, the wheels that the lent GPU machine lacks (it has torch, Lightning, timm,
# scikit-image, tifffile, matplotlib, but no index to install from): into .whl/ (git-ignored through
# .git/info/exclude), for its Python 3.12 on x86-64. Then carry .whl (and .gpu_data) to bench/gpu_check.sh.
#
#     bash bench/gpu_wheels.sh && du -sh .whl
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info && grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
# The versions of constraints.txt, each with the packages it needs that the GPU machine does not have.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 albumentations==2.0.8 albucore==0.0.24 \
  segmentation-models-pytorch==0.6.0 pydantic==2.12.5 pydantic-core==2.41.5 typing-inspection==0.4.5 \
  annotated-types==0.8.0 stringzilla==5.3.2 simsimd==6.5.16 monai==1.6.1 kornia==0.9.0 kornia-rs==0.2.0
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) is published as a source package only: pure
# Python, so a wheel built here installs there.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls .whl
# The ISBI 2012 training stack for experiment=isbi_fast (15 MB), into .gpu_data/ (git-ignored too).
grep -qx '/.gpu_data/' .git/info/exclude || echo '/.gpu_data/' >> .git/info/exclude
if [ -d ../shared/data/isbi2012 ]; then
  mkdir -p .gpu_data/isbi2012 && cp ../shared/data/isbi2012/train-*.tif .gpu_data/isbi2012/
fi
