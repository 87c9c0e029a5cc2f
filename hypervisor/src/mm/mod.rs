//! Memory: physical frame/region allocation and the stage-2 (p2m) page tables.
