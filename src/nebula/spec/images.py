"""Image references, as Docker reads them: what a compose service's `image:` and a docker
function's `implementation` must be."""

from __future__ import annotations

import re

from nebula.spec.names import excerpt

# The image reference grammar of the distribution spec (distribution/reference, regexp.go).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)  # as Go's \w
_NAME_MAX = 255


def check_image(image: str) -> str:
    """`image` if it is a valid reference ([host[:port]/]path[:tag][@digest]), else ValueError."""
    match = _IMAGE.fullmatch(image)
    if not match:
        hint = " (repository names are lowercase)" if image.lower() != image else ""
        raise ValueError(
            f"{excerpt(image)} is not a valid image reference{hint}; "
            "expected [registry[:port]/]name[:tag][@digest], e.g. nginx:1.27 or ghcr.io/org/app:v1"
        )
    if len(match["name"]) > _NAME_MAX:
        raise ValueError(
            f"image name {excerpt(match['name'])} is longer than {_NAME_MAX} characters"
        )
    return image
