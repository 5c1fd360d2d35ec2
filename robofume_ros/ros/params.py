"""Node parameters as dataclasses: every knob has a default and a description in one place.

A node declares `Params(dataclass)` whose fields carry `metadata={"help": ...}`; `declare(node,
Params)` declares each as a ROS parameter (with its description, so `ros2 param describe` works)
and returns a filled instance. The same dataclasses feed the runner's `--help` and the test that
checks config/*.yaml only sets parameters that exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Type, TypeVar

T = TypeVar("T")


def knob(default: Any, help: str):
    """A dataclass field with a default and a description (lists are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def describe(params_cls) -> list[tuple[str, Any, str]]:
    """(name, default, description) for every field of a params dataclass."""
    out = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def declare(node, params_cls: Type[T]) -> T:
    """Declare every field of `params_cls` on an rclpy node and return the values in effect."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for name, default, help_text in describe(params_cls):
        desc = ParameterDescriptor(description=help_text)
        if isinstance(default, list) and not default:
            # an empty list has no type for rclpy to infer: declare it as a string array
            from rclpy.parameter import Parameter

            p = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
            val = p.value if p.value is not None else []
        else:
            val = node.declare_parameter(name, default, desc).value
        if isinstance(default, float) and isinstance(val, int):
            val = float(val)
        if isinstance(default, (list, tuple)) and val is not None:
            val = list(val)
        values[name] = val
    return params_cls(**values)
