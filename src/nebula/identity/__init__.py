"""Identity: local users, tokens, API keys and roles for the daemon API."""
