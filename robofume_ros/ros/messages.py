"""Message classes by type name, and a check that the built (rosidl) messages match msg/."""

from __future__ import annotations

import importlib


def message_class(type_name: str):
    """'pkg/msg/Name' -> the Python message class."""
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def built_layout_mismatch(type_name: str, cls, store) -> str | None:
    """Why the built message class `cls` does not match the definition `store` holds for
    `type_name` (the .msg files a bag embeds), None if it does. Bytes published by a class built
    from an older msg/ would be recorded under the newer definition and never read back."""
    have = store.fielddefs.get(type_name)
    if have is None or not hasattr(cls, "get_fields_and_field_types"):
        return None
    built = list(cls.get_fields_and_field_types())
    # an empty message (std_msgs/Empty) holds one placeholder field in its IDL form
    source = [f[0] for f in have[1] if f[0] != "structure_needs_at_least_one_member"]
    if built == source:
        return None
    return (
        f"the built {type_name} has fields {built} but msg/ defines {source}: the messages were built "
        f"from another version of msg/; rebuild them (bash tools/setup.sh, or colcon build)"
    )
