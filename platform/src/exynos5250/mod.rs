//! Samsung Exynos5250 (Chromebook Snow).
