"""Helpers to test oodml against real infrastructure on one machine (a private Slurm cluster)."""
