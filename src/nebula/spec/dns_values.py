"""The values of `domains/*.yaml`: zone and record names, record data per type, the token's
`${secret:NAME}` form. `spec.domain`'s models validate with these, and `kinds.dns.desired`
normalises record data with them (`canonical_value`, `qualify`).
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Literal

from nebula.spec.names import SECRET_NAME_PATTERN, excerpt

RecordType = Literal["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA"]
RECORD_TYPES: tuple[RecordType, ...] = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA")

_LABEL = r"(\*|_?[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)"
_RELATIVE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_ZONE = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_CAA_TAGS = ("issue", "issuewild", "iodef")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")  # as `str(IPv4Address(...))` writes
_SECRET_REFERENCE = re.compile(rf"\$\{{secret:{SECRET_NAME_PATTERN}\}}")


def qualify(name: str, zone: str) -> str:
    """`www` → `www.example.com`, `@` → `example.com`, `x.other.org.` → `x.other.org`."""
    name = name.strip().lower()
    if name in ("@", ""):
        return zone
    if name.endswith("."):
        return name[:-1]
    return f"{name}.{zone}"


def _target(value: str, what: str) -> str:
    """A host name in a record's data: `.` (none), relative, or absolute with a final dot."""
    bare = value.lower().rstrip(".")
    if value not in (".", "@") and not _RELATIVE.fullmatch(bare):
        raise ValueError(f"{excerpt(value)} is not a host name ({what})")
    return value


def _number(text: str, what: str, top: int) -> int:
    if not text.isdigit() or int(text) > top:
        raise ValueError(f"{excerpt(text)} is not a valid {what} (0 to {top})")
    return int(text)


def check_value(kind: RecordType, value: str) -> None:
    """Raise `ValueError` with what is valid when `value` is not data for a `kind` record."""
    parts = value.split()
    if kind == "A":
        try:
            IPv4Address(value)
        except AddressValueError:
            raise ValueError(f"{excerpt(value)} is not an IPv4 address (e.g. 192.0.2.10)") from None
    elif kind == "AAAA":
        try:
            IPv6Address(value)
        except AddressValueError:
            raise ValueError(
                f"{excerpt(value)} is not an IPv6 address (e.g. 2001:db8::10)"
            ) from None
    elif kind == "CNAME":
        _target(value, "CNAME target, e.g. www or www.example.com.")
    elif kind == "TXT":
        if not value or len(value.encode()) > 4000:
            raise ValueError("TXT data must be 1 to 4000 bytes")
    elif kind == "MX":
        if len(parts) != 2:
            raise ValueError(
                f"{excerpt(value)}: MX data is `PRIORITY HOST`, e.g. `10 mail.example.com.`"
            )
        _number(parts[0], "MX priority", 65535)
        _target(parts[1], "MX host")
    elif kind == "SRV":
        if len(parts) != 4:
            raise ValueError(
                f"{excerpt(value)}: SRV data is `PRIORITY WEIGHT PORT TARGET`, "
                "e.g. `10 5 5060 sip.example.com.`"
            )
        for part, what in zip(parts[:3], ("priority", "weight", "port"), strict=True):
            _number(part, f"SRV {what}", 65535)
        _target(parts[3], "SRV target")
    elif kind == "CAA":
        match = re.fullmatch(r'(\d+)\s+([a-z0-9]+)\s+"([^"]*)"', value, re.IGNORECASE)
        if match is None:
            raise ValueError(
                f'{excerpt(value)}: CAA data is `FLAGS TAG "VALUE"`, e.g. `0 issue "letsencrypt.org"`'
            )
        _number(match[1], "CAA flag", 255)
        if match[2].lower() not in _CAA_TAGS:
            raise ValueError(f"CAA tag {excerpt(match[2])} is not one of {', '.join(_CAA_TAGS)}")


def check_record_name(name: str) -> str:
    """A record's name as written, normalised (lowercase, `@` for the apex); `ValueError` if
    it is none."""
    bare = name.strip().lower()
    if bare not in ("@", "") and not _RELATIVE.fullmatch(bare.rstrip(".")):
        raise ValueError(
            f"{excerpt(name)} is not a record name: use `@` for the zone itself, a relative "
            "name such as `www` or `_sip._tcp`, or an absolute one ending in `.`"
        )
    return bare or "@"


def check_zone_name(zone: str) -> str:
    """A zone's name, normalised (lowercase, no final dot); `ValueError` if it is none."""
    bare = zone.strip().lower().rstrip(".")
    if not _ZONE.fullmatch(bare):
        raise ValueError(f"{excerpt(zone)} is not a zone name (e.g. example.com)")
    return bare


def check_secret_reference(token: str, what: str = "token") -> str:
    """A credential (a provider token, an API key), which must be `${secret:NAME}`;
    `ValueError` for anything else."""
    if not _SECRET_REFERENCE.fullmatch(token.strip()):
        raise ValueError(
            f"write the {what} as ${{secret:NAME}} (stored with `nebula secrets set NAME`); "
            f"a {what} in the repo would be readable by anyone with the repo"
        )
    return token.strip()


TARGET_AT = {"CNAME": 0, "MX": 1, "SRV": 3}  # which word of the data is a host name


def canonical_value(kind: str, value: str, zone: str) -> str:
    """A spec value in the canonical form of the DNS kind's types: targets absolute, no final
    dot."""
    if kind == "A":  # most addresses are written canonically: no need to parse them
        return value if _CANONICAL_IPV4.fullmatch(value) else str(IPv4Address(value))
    if kind == "AAAA":
        return str(IPv6Address(value))
    if kind == "TXT":
        return value
    words = value.split()
    if kind in TARGET_AT:
        at = TARGET_AT[kind]
        target = words[at]
        words[at] = "." if target == "." else qualify(target, zone)
        return " ".join(words)
    if kind == "CAA":
        flags, tag, rest = value.split(None, 2)
        return f"{int(flags)} {tag.lower()} {rest}"
    return value
