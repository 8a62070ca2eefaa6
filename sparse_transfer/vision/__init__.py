"""Sparse pre-training of vision models: AC/DC(++), GMP and RigL (issue 4)."""
