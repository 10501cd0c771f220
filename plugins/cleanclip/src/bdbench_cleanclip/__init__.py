"""CleanCLIP (Bansal et al., ICCV 2023) for bdbench: a post-training defense."""
