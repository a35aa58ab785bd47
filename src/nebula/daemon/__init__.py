"""nebulad: follows the config repo and keeps the node matching it."""
