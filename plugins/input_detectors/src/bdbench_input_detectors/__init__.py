"""Input-level backdoor detectors (STRIP) for bdbench."""
