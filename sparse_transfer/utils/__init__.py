"""Plumbing below every workflow: one-line errors, the hub check, command-line arguments,
typed YAML sections, atomic files, run reports and plots, checkpoints to resume from."""
