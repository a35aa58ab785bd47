"""`nebula tui`: a Textual dashboard over nebulad's API and event stream."""
