"""The packages kind of the config repo."""
