"""Compiled (numba) CPU kernels of the engine; each beside its pure-PyTorch reference."""
