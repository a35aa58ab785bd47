"""The vault: secrets encrypted at rest (AES-256-GCM envelopes under a master key)."""
