"""The routes kind of the config repo."""
