"""bdbench adaptive attacks: stress tests that know the defense or detector they face."""
