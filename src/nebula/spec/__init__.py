"""The config repo as data: pydantic models for each YAML kind, the loader, interpolation."""
