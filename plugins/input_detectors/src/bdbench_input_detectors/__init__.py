"""Input-level backdoor detectors (STRIP, SCALE-UP, TeCo) for bdbench."""
