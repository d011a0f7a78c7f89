"""JSON merge patches (RFC 7386) between two JSON documents. Pure."""

from __future__ import annotations

from typing import Any


def merge_patch(old: Any, new: Any) -> Any:
    """The merge patch that turns `old` into `new`; {} when they are equal.

    Keys gone from `new` become null (a merge patch deletes them); lists are replaced whole.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(old[key], dict) and isinstance(value, dict):
                sub = merge_patch(old[key], value)
                if sub != {}:
                    patch[key] = sub
            else:
                patch[key] = value
    return patch
