"""PDB — Proactive Defensive Backdoor (Wei et al., NeurIPS 2024) ported to CLIP, and its robustness probe."""
