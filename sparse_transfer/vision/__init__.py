"""Sparse training of vision models: AC/DC and AC/DC++ (2106.12379; 2308.02060, section 3),
GMP and RigL baselines (`train.py`), and the end-to-end pruning pipeline (`pipeline/`)."""
