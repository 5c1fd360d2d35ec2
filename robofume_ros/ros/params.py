"""Node parameters as dataclasses: every knob has a default and a description in one place.

A node declares `Params(dataclass)` whose fields carry `metadata={"help": ...}` (and optionally a
`range` or `choices`); `declare(node, Params)` declares each as a ROS parameter (description and
range in its descriptor, so `ros2 param describe` shows them), rejects a value outside its range
or choices with an error that names the allowed values, and returns a filled instance. Parameters
are read-only once the node runs (they take effect at start: `ros2 param set` says so instead of
appearing to change something). The same dataclasses feed `robofume params`, the recipe test and
the test that config files only set parameters that exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Callable, Type, TypeVar

T = TypeVar("T")


def knob(
    default: Any,
    help: str,
    range: tuple | None = None,
    choices: tuple | None = None,
    runtime: bool = False,
    check: Callable[[Any], None] | None = None,
):
    """A dataclass field with a default and a description (lists are copied per instance);
    `range` (low, high) for a number, `choices` for a string: values outside are rejected;
    `check(value)` raises ValueError for any other value it refuses (at start and on set).
    `runtime`: safe to change while the node runs (`ros2 param set`); the others are read-only."""
    meta = {
        "help": help,
        "range": range,
        "choices": tuple(choices) if choices else None,
        "runtime": runtime,
        "check": check,
    }
    check_value("default", default, meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def check_value(name: str, value: Any, meta: dict) -> None:
    """Raise ValueError naming the parameter and what it allows when `value` is outside its range
    or choices."""
    lo_hi, choices = meta.get("range"), meta.get("choices")
    if lo_hi is not None and not (lo_hi[0] <= value <= lo_hi[1]):
        raise ValueError(f"parameter {name}={value!r} is outside its range [{lo_hi[0]}, {lo_hi[1]}]")
    if choices and value not in choices:
        raise ValueError(f"parameter {name}={value!r} is not one of {', '.join(map(repr, choices))}")
    if meta.get("check") is not None:
        try:
            meta["check"](value)
        except ValueError as e:
            raise ValueError(f"parameter {name}={value!r}: {e}") from None


def constraints(params_cls) -> dict:
    """{name: field metadata} of a params dataclass (help, range, choices)."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(params_cls)}


def describe(params_cls) -> list[tuple[str, Any, str]]:
    """(name, default, description) for every field of a params dataclass."""
    out = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def _descriptor(help_text: str, default: Any, meta: dict):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = help_text + (f" (one of: {', '.join(meta['choices'])})" if meta.get("choices") else "")
    text += " [runtime: may be set while the node runs]" if meta.get("runtime") else ""
    desc = ParameterDescriptor(description=text, read_only=not meta.get("runtime"))
    lo_hi = meta.get("range")
    if lo_hi is not None and isinstance(default, bool):
        raise TypeError("a range on a bool parameter")
    if lo_hi is not None and isinstance(default, int):
        desc.integer_range = [IntegerRange(from_value=int(lo_hi[0]), to_value=int(lo_hi[1]), step=0)]
    elif lo_hi is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(lo_hi[0]), to_value=float(lo_hi[1]), step=0.0)]
    return desc


def declare(node, params_cls: Type[T], apply: Callable | None = None) -> T:
    """Declare every field of `params_cls` on an rclpy node and return the values in effect.
    Raises ValueError naming the parameter and its allowed values for one outside them. Where
    the class has `runtime` knobs they may then change while the node runs (on_runtime_change,
    with `apply(name, value)`)."""
    meta = constraints(params_cls)
    values = {}
    for name, default, help_text in describe(params_cls):
        desc = _descriptor(help_text, default, meta[name])
        if isinstance(default, list) and not default:
            # an empty list has no type for rclpy to infer: declare it as a string array
            from rclpy.parameter import Parameter

            p = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
            val = p.value if p.value is not None else []
        else:
            from rclpy.exceptions import InvalidParameterValueException

            try:
                val = node.declare_parameter(name, default, desc).value
            except InvalidParameterValueException as e:  # rclpy's range check: name the range too
                lo, hi = meta[name].get("range") or ("?", "?")
                raise ValueError(f"parameter {name} is outside its range [{lo}, {hi}] ({e})") from e
        if isinstance(default, float) and isinstance(val, int):
            val = float(val)
        check_value(name, val, meta[name])
        if isinstance(default, (list, tuple)) and val is not None:
            val = list(val)
        values[name] = val
    params = params_cls(**values)
    if any(m.get("runtime") for m in meta.values()):
        on_runtime_change(node, params, apply)
    return params


def on_runtime_change(node, params, apply=None) -> None:
    """Let the `runtime` knobs of `params` (the instance `declare` returned) change while the node
    runs: a new value is checked against its range and choices (rejected with the allowed values,
    nothing changed), then set on `params` and passed to `apply(name, value)`, which may raise
    ValueError to refuse it. Logged; /diagnostics reports the values in effect."""
    from rcl_interfaces.msg import SetParametersResult

    meta = constraints(type(params))

    def callback(changes):
        for prm in changes:
            m = meta.get(prm.name)
            if m is None or not m.get("runtime"):
                continue  # read-only ones are refused by rclpy itself; others are not ours
            value = prm.value
            if isinstance(getattr(params, prm.name), float) and isinstance(value, int):
                value = float(value)
            try:
                check_value(prm.name, value, m)
                if apply is not None:
                    apply(prm.name, value)
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
            setattr(params, prm.name, value)
            node.get_logger().info(f"parameter {prm.name} set to {value!r} while running")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)
