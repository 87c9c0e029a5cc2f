//! A model of the Exynos SysMMU for host tests.
