//! Device trees: parse the host's, build dom0's.
