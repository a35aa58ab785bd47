"""The dns kind of the config repo."""
