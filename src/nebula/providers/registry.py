"""Every provider Nebula can drive, by kind and name, imported only when used.

A new DNS provider is one module implementing `providers.dns.base.DnsProvider` plus one line in
`PROVIDERS`. What a provider can do is declared on its class (`capabilities`) and enforced once,
when the kind validates the zones that name it: a record type it cannot serve, `proxied` where
it has no proxy, a missing API URL it needs, are errors at the file and line that ask for them.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any

from nebula.errors import NebulaError
from nebula.spec.names import excerpt

PROVIDERS: dict[str, dict[str, str]] = {
    "dns": {
        "powerdns": "nebula.providers.dns.powerdns:PowerDnsProvider",
        "cloudflare": "nebula.providers.dns.cloudflare:CloudflareProvider",
    },
}


class UnknownProviderError(NebulaError):
    """No provider of that kind and name."""


def names(kind: str) -> list[str]:
    """The providers of `kind`, by name."""
    return list(PROVIDERS.get(kind, {}))


def provider_class(kind: str, name: str) -> Any:
    """The class of the provider `name` of `kind`, its module imported now."""
    try:
        target = PROVIDERS[kind][name]
    except KeyError:
        known = names(kind)
        hint = get_close_matches(name, known, n=1)
        guess = f"did you mean {hint[0]!r}? " if hint else ""
        raise UnknownProviderError(
            f"unknown {kind.upper()} provider {excerpt(name)}: {guess}one of {', '.join(known)}"
        ) from None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
