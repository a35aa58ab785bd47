"""The AI runtime nebulad runs: agents executing their tool-calling loop under guardrails, the functions they call, their executions and approvals."""
