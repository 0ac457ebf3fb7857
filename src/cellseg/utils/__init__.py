"""Helpers that know nothing of cellseg: atomic file writing (JSON, CSV, checkpoints), the score table
every command prints, and the DDP launcher that keeps Hydra jobs in their own folders."""
