"""Runnable demonstrations behind ``ctsnn demo``."""
