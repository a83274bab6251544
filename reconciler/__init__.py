"""Declarative reconciler for local LLM serving on NVIDIA GPUs."""

__version__ = "0.1.0"
