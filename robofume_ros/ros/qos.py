"""QoS profiles used across the graph (one place, so publishers and subscribers agree)."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Sensor-style streams: newest data matters, never queue stale frames.
SENSOR = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
# The same streams into the camera node, which makes every observation: a few frames and states
# queue while it is busy for a moment (a loaded machine), so the robot steps no frame goes missing
# for; it thins to the control rate and skips frames older than its max age itself.
FRAMES = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
# Control and learning streams: every message matters (commands, observations for the learner).
RELIABLE = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
# State that late joiners must see (task phase, latest weights notification).
LATCHED = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# A latched stream whose every message matters to a reader that may fall behind (the learner's
# task phases: each ends an episode): the late-joiner gets the newest, live ones queue deep.
LATCHED_DEEP = QoSProfile(
    depth=1000,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# A consumer that may fall behind for a while (the learner while it trains): a deep reader queue.
DEEP = QoSProfile(depth=2000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
# A backfill burst: every message must arrive, however many the replay holds.
BULK = QoSProfile(depth=1, history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


def for_recording(topic: str) -> QoSProfile:
    """A recorder's subscription to one of the graph's topics: the topic's reliability and
    durability (best-effort publishers need best-effort subscribers) with a deep reader queue. The
    bag is the record of what the robot did: a recorder that is busy for a while (niced on a loaded
    machine, writing a file, replaying a backfill) must find what arrived meanwhile still queued,
    not replaced by newer messages as in a control stream's queue of 50."""
    p = for_topic(topic)
    return QoSProfile(
        depth=DEEP.depth, history=HistoryPolicy.KEEP_LAST, reliability=p.reliability, durability=p.durability
    )


def for_topic(topic: str) -> QoSProfile:
    """The profile a subscriber should use for one of the graph's topics (interfaces.TOPICS), by
    its name relative or absolute, in any namespace."""
    from robofume_ros.interfaces import topic_key

    key = topic_key(topic)
    if key in ("image", "state", "expert_state"):
        return SENSOR
    if key in ("task_phase", "weights", "help", "safety"):
        return LATCHED
    return RELIABLE
