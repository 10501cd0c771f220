"""Decomposition-based defenses, detector and probes (He et al., ICML 2025) for bdbench."""
