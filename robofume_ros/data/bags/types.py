"""Bag errors, the typestore with robofume_ros interfaces, and message builders (rosbags message
objects; serialize with store.serialize_cdr)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from robofume_ros.interfaces import MSGTYPES, PACKAGE, TASK_PHASE, msg_dir


MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(RuntimeError):
    """Any problem reading or writing a bag; the message says what and where."""


class BagTruncatedError(BagError):
    """A bag file ends early (recorder killed, disk full, copy interrupted)."""


class BagCorruptError(BagError):
    """A bag file is not a valid rosbag2/MCAP file."""


class MissingTopicError(BagError):
    """A topic the caller needs is not in the bag."""


class UnknownMessageTypeError(BagError):
    """A message type is neither in the typestore nor defined inside the bag."""


# --------------------------------------------------------------------------------------------
# typestore
# --------------------------------------------------------------------------------------------


_TYPESTORE = None


def _base_store():
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    return get_typestore(Stores.LATEST)


def typestore(fresh: bool = False):
    """The standard ROS 2 types (kilted, else jazzy) plus robofume_ros/msg/* from msg_dir().
    Cached; pass fresh=True for a private copy you may register more types into."""
    global _TYPESTORE
    if _TYPESTORE is not None:
        if not fresh:
            return _TYPESTORE
        import copy

        return copy.deepcopy(_TYPESTORE)
    import copy
    from rosbags.typesys import get_types_from_msg

    store = _base_store()
    types = {}
    for f in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{PACKAGE}/msg/{f.stem}"))
    store.register(types)
    _TYPESTORE = store
    return copy.deepcopy(store) if fresh else store


def _parsed_definition(c) -> Optional[dict]:
    """The parse tree of the definition a connection embeds (MCAP schema), None where it has none."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg
    from rosbags.interfaces import MessageDefinitionFormat

    md = c.msgdef
    if md is None or md.format == MessageDefinitionFormat.NONE or not md.data:
        return None
    try:
        if md.format == MessageDefinitionFormat.IDL:
            return get_types_from_idl(md.data)
        return get_types_from_msg(md.data, c.msgtype)
    except Exception as err:  # unparsable definition
        raise UnknownMessageTypeError(f"cannot parse the definition of {c.msgtype} embedded in the bag: {err}") from err


_EMBEDDED_FIELDS: dict = {}


def _embedded_fields(c) -> dict:
    """{type name: its fields, as a store holds them} for a connection's embedded definition
    (its message type and the types it uses), cached per definition text."""
    md = c.msgdef
    key = (c.msgtype, getattr(md, "data", None))
    if key not in _EMBEDDED_FIELDS:
        from rosbags.typesys.store import Typestore

        parsed = _parsed_definition(c)
        probe = Typestore()
        if parsed:
            probe.register(parsed)
        _EMBEDDED_FIELDS[key] = {n: [(f[0].lower(), f[1]) for f in fd[1]] for n, fd in probe.fielddefs.items()}
    return _EMBEDDED_FIELDS[key]


def redefined_types(store, connections) -> set:
    """Types a bag defines differently from `store`: a recording made by an older (or newer)
    version of a message, whose bytes only its own definition reads."""
    out = set()
    for c in connections:
        for name, fields in _embedded_fields(c).items():
            have = store.fielddefs.get(name)
            if have is not None and [(f[0].lower(), f[1]) for f in have[1]] != fields:
                out.add(name)
    return out


def bag_store(connections, redefined):
    """A private store where the bag's own definitions of `redefined` types (and of the types
    that use them) replace the current ones."""
    store = typestore(fresh=True)
    users = set(redefined)
    for c in connections:  # a type embedding a redefined type is read with the bag's definition too
        if c.msgtype in store.fielddefs and set(_embedded_fields(c)) & set(redefined):
            users.add(c.msgtype)
    for name in users:
        store.fielddefs.pop(name, None)
        store.types.pop(name, None)
    store.cache.clear()
    register_bag_types(store, connections)
    return store


def register_bag_types(store, connections) -> None:
    """Register message types defined inside a bag (MCAP schemas) that the store lacks."""
    for c in connections:
        if c.msgtype in store.fielddefs:
            continue
        parsed = _parsed_definition(c)
        if not parsed:
            continue
        try:
            store.register(parsed)
        except Exception as err:  # conflicting definition
            raise UnknownMessageTypeError(
                f"cannot register the definition of {c.msgtype} embedded in the bag: {err}"
            ) from err


# --------------------------------------------------------------------------------------------
# message builders (rosbags message objects; serialize with store.serialize_cdr)
# --------------------------------------------------------------------------------------------


def _time(store, ns: int):
    T = store.types["builtin_interfaces/msg/Time"]
    return T(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(store, ns: int, frame_id: str = ""):
    return store.types["std_msgs/msg/Header"](stamp=_time(store, ns), frame_id=frame_id)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_image(store, ns: int, image: np.ndarray, frame_id: str = "camera"):
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, ns, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=img.reshape(-1),
    )


def make_observation(
    store,
    ns: int,
    image: np.ndarray,
    proprio,
    instruction: str,
    task: str,
    phase: int = 0,
    episode_index: int = 0,
    image_ns: Optional[int] = None,
    features=None,
    features_id: str = "",
):
    """An Observation as the camera sends it; `features` (with `features_id`): its shared image
    features, none by default."""
    return store.types[MSGTYPES["observation"]](
        header=_header(store, ns),
        image=make_image(store, ns if image_ns is None else image_ns, image),
        proprio=np.asarray(proprio, dtype=np.float32).reshape(-1),
        instruction=instruction,
        task=task,
        phase=int(phase),
        episode_index=int(episode_index),
        image_stamp=_time(store, ns if image_ns is None else image_ns),
        features=np.asarray([] if features is None else features, dtype=np.float32).reshape(-1),
        features_id=features_id,
    )


def make_command(store, ns: int, action, source: str = "policy", intervention: bool = False):
    """ArmCommand from an action vector: 4-D [tx,ty,tz,g] or 7-D [tx,ty,tz,rx,ry,rz,g]."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    V = store.types["geometry_msgs/msg/Vector3"]
    if len(a) == 4:
        t, r, g = a[:3], (0.0, 0.0, 0.0), a[3]
    elif len(a) == 7:
        t, r, g = a[:3], a[3:6], a[6]
    else:
        raise ValueError(f"action must have 4 or 7 entries, got {len(a)}")
    return store.types[MSGTYPES["command"]](
        header=_header(store, ns),
        translation=V(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=V(x=float(r[0]), y=float(r[1]), z=float(r[2])),
        gripper=float(g),
        source=source,
        intervention=bool(intervention),
    )


def make_reward(
    store,
    ns: int,
    probability: float,
    success: bool,
    threshold: float = 0.5,
    instruction: str = "",
    episode_index: int = 0,
    model_id: str = "",
    consecutive_positive: int = 0,
    latency_ms: float = 0.0,
):
    return store.types[MSGTYPES["reward"]](
        header=_header(store, ns),
        probability=float(probability),
        success=bool(success),
        threshold=float(threshold),
        consecutive_positive=int(consecutive_positive),
        model_id=model_id,
        instruction=instruction,
        episode_index=int(episode_index),
        latency_ms=float(latency_ms),
    )


def make_task_phase(
    store,
    ns: int,
    phase: int,
    task: str,
    instruction: str,
    episode_index: int,
    last_switch_reason: int,
    steps_in_episode: int = 0,
    paused: bool = False,
    counters=(0, 0, 0, 0),
    recent=(),
):
    """`recent`: (episode index, ended by success) of the last episodes that ended."""
    return store.types[MSGTYPES["task_phase"]](
        header=_header(store, ns),
        phase=int(phase),
        task=task,
        instruction=instruction,
        episode_index=int(episode_index),
        last_switch_reason=int(last_switch_reason),
        steps_in_episode=int(steps_in_episode),
        paused=bool(paused),
        forward_successes=int(counters[0]),
        backward_successes=int(counters[1]),
        forward_timeouts=int(counters[2]),
        backward_timeouts=int(counters[3]),
        overrides=0,
        recent_episodes=np.array([int(i) for i, _ in recent], dtype=np.uint32),
        recent_successes=np.array([bool(ok) for _, ok in recent], dtype=np.bool_),
    )


def make_ground_truth(store, ns: int, task: str, success: bool, sim_step: int = 0):
    return store.types[MSGTYPES["ground_truth"]](
        header=_header(store, ns), task=task, success=bool(success), sim_step=int(sim_step)
    )


REASON_START, REASON_SUCCESS, REASON_TIMEOUT, REASON_FORCED, REASON_RESUMED = (
    TASK_PHASE[k] for k in ("REASON_START", "REASON_SUCCESS", "REASON_TIMEOUT", "REASON_FORCED", "REASON_RESUMED")
)
FORWARD, BACKWARD = TASK_PHASE["FORWARD"], TASK_PHASE["BACKWARD"]
