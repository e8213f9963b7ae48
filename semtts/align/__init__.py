"""Monotonic alignment search: :func:`maximum_path` and its backends."""

from semtts.align.maximum_path import BACKENDS, LAYOUTS, available_backends, maximum_path

__all__ = ["maximum_path", "available_backends", "BACKENDS", "LAYOUTS"]
