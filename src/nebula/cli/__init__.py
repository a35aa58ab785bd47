"""The `nebula` command line: parse, call the library, render with rich."""
