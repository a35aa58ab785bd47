"""One module per resource kind: turn the spec into desired resources and diff them."""
