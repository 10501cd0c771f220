"""Backdoor attacks for bdbench, registered through the ``bdbench`` entry point (see ``plugin.py``)."""
