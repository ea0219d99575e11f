"""Reproductions of published architectures and training recipes (one module per paper)."""
