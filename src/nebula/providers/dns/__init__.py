"""DNS providers: PowerDNS (its HTTP API) and Cloudflare (the official SDK)."""
