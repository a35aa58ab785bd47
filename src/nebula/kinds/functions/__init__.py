"""The functions kind: `functions/*.yaml` of the config repo, the tools agents may call (a
built-in Nebula function, an HTTP request or a one-shot container), validated at load and
recorded in the store."""
