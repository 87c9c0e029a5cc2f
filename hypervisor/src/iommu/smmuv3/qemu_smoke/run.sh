#!/bin/sh
# Build the smoke test and run it on QEMU virt with an SMMUv3 and an edu device.
# Extra arguments go to QEMU. Exit status 0 iff the RESULT line is $EXPECT (default
# all-pass). QEMU 10's `virt` forces a nested (S1+S2) SMMU; for a stage-1-only SMMU:
#   EXPECT=fallback ./run.sh -M virt-9.1,iommu=smmuv3
set -e
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/smmuv3-qemu-smoke}"
cargo build --offline -q
out=$(timeout 60 qemu-system-aarch64 -M virt,iommu=smmuv3 -cpu cortex-a57 -m 1G -nographic \
  -no-reboot -kernel "$CARGO_TARGET_DIR/aarch64-unknown-none-softfloat/debug/smmuv3-qemu-smoke" \
  -device edu,dma_mask=0xffffffffffffffff "$@" 2>&1 | tr -d '\r')
echo "$out"
echo "$out" | grep -q "^RESULT ${EXPECT:-all-pass}"
