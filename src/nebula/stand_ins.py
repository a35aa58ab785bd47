"""A secret's stand-in: what takes its place in desired state, plans, labels and the audit log.

Kept apart from the packages kind's types, so masking an audit detail does not load them.
"""

MASK = "••••"


def stand_in(fingerprint: str) -> str:
    """What takes a secret's place in desired state, plans and labels: `••••` + its fingerprint.

    The vault's keyed fingerprint changes when the value does and reveals nothing; apply swaps
    the stand-in for the value only in what it hands to Docker.
    """
    return MASK + fingerprint
