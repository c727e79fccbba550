"""Configs for experiments/nasnet (ml_collections)."""
