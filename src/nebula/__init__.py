"""Nebula: GitOps for the homelab."""

__version__ = "0.1.0"
