"""The runbooks kind: `runbooks/*.yml` of the config repo and the built-in runbooks a repo
enables, validated at load (sandboxed templates and conditions) and recorded in the store for
the remediation engine."""
