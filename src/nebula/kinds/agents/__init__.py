"""The agents kind: `agents/*.yaml` of the config repo, agent profiles (a model, a system
prompt, the functions it may call, its guardrails), validated at load and recorded in the
store."""
