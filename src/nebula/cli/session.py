"""`replay_noop` under the name bench/noop_plan.py imports it by; goes once the bench imports
it from `nebula.engine.session`."""

from nebula.engine.session import replay_noop

__all__ = ["replay_noop"]
