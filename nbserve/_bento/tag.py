"""`name[:version]` tags for model-store entries, with BentoML's rules.

A name or a version is lowercase letters, digits, `-`, `_` and `.`, starts and ends with a
letter or digit, and is at most 63 characters (BentoML's `_internal/tag.py`; 63 keeps it a
valid DNS label, so a tag can name a Kubernetes object). Like BentoML, uppercase is lowered
with a logged warning rather than refused, so `get("Iris")` finds what `save("iris")` stored.
The version `latest` means "whatever `<name>/latest` points at".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from nbserve.exceptions import InvalidArgument

__all__ = ["Tag"]

logger = logging.getLogger("nbserve.models")

MAX_LENGTH = 63
# A name or version's characters (no length limit); also what a bento's name and version must match.
PART = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
_RULE = (
    "lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
    f"at most {MAX_LENGTH} characters (e.g. 'iris-classifier' or 'iris-classifier:v1')"
)


def is_valid_part(value: str) -> bool:
    """Whether `value` is a valid name or version as it stands (no lowercasing)."""
    return len(value) <= MAX_LENGTH and PART.fullmatch(value) is not None


def _checked(value: str, what: str, tag: str) -> str:
    lowered = value.lower()
    if lowered != value:
        logger.warning("Converting the model %s %r to lowercase: %r.", what, value, lowered)
    if not is_valid_part(lowered):
        msg = f"Invalid model tag {tag!r}: the {what} {value!r} must be {_RULE}."
        raise InvalidArgument(msg)
    return lowered


@dataclass(frozen=True)
class Tag:
    """A model's `name` and optional `version`; `str(tag)` is `name` or `name:version`."""

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        shown = self.name if self.version is None else f"{self.name}:{self.version}"
        # Frozen, so the normalised (lowercased) parts are written past __setattr__.
        object.__setattr__(self, "name", _checked(self.name, "name", shown))
        if self.version is not None:
            object.__setattr__(self, "version", _checked(self.version, "version", shown))

    @classmethod
    def from_taglike(cls, taglike: Tag | str) -> Tag:
        """Parse `"name"`, `"name:version"` or `"name:latest"`; a `Tag` is returned as is."""
        value: object = taglike  # checked at runtime too: notebooks pass anything
        if isinstance(value, Tag):
            return value
        if not isinstance(value, str):
            msg = f"A model tag must be a string, e.g. 'iris:latest'; got {type(value).__name__} {value!r}."
            raise InvalidArgument(msg)
        name, sep, version = value.partition(":")
        if sep and not version:
            msg = f"Invalid model tag {value!r}: nothing after ':'; write 'name', 'name:latest' or 'name:<version>'."
            raise InvalidArgument(msg)
        return cls(name, version if sep else None)

    @property
    def is_latest(self) -> bool:
        """True for `name` and `name:latest`: resolved through the `latest` file."""
        return self.version is None or self.version == "latest"

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
