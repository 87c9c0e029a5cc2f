//! Arm SMMUv3 driver.
