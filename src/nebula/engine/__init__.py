"""The pipeline and what commands open through it: load a commit, plan every kind, guard, apply."""
