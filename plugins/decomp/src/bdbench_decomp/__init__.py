"""Decomposition-based defenses, detector and probes (Lin et al., ICML 2025) for bdbench."""
