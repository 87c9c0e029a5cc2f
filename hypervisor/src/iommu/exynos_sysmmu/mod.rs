//! Samsung Exynos SysMMU driver.
