"""The projects kind of the config repo: the user's own apps, built from git and deployed."""
