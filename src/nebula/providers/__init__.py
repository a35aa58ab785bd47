"""Adapters to outside systems. Thin: read state, carry out one change; no decisions here."""
