"""One module per command. Each imports heavy modules inside its function, so --help is fast."""
