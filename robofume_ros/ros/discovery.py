"""Waiting for discovery: a publisher's first messages are lost (volatile QoS) when they go out
before the subscriptions that should get them have matched, and each topic matches on its own.

    wait_matched(node, pubs={pub_obs: 1, pub_cmd: 1}, subs={sub_weights: 1}, timeout=30)

returns once every publisher has at least its count of matched subscriptions and every
subscription its count of matched publishers, spinning `node` (or sleeping while another thread
spins it) in between; raises TimeoutError naming what is still missing.
"""

from __future__ import annotations

import time


def unmatched(pubs: dict | None = None, subs: dict | None = None) -> list[str]:
    """What is still missing: 'publisher /x: 0 of 2 subscriptions matched', ..."""
    out = []
    for pub, n in (pubs or {}).items():
        have = pub.get_subscription_count()
        if have < n:
            out.append(f"publisher {pub.topic_name}: {have} of {n} subscriptions matched")
    for sub, n in (subs or {}).items():
        have = sub.get_publisher_count()
        if have < n:
            out.append(f"subscription {sub.topic_name}: {have} of {n} publishers matched")
    return out


def wait_matched(
    node=None, pubs: dict | None = None, subs: dict | None = None, timeout: float = 30.0, poll_s: float = 0.05
) -> float:
    """Block until every publisher and subscription has matched its count (see module doc).
    `node`: spin it while waiting (None when an executor thread already spins it). Returns the
    seconds waited."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        missing = unmatched(pubs, subs)
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise TimeoutError(f"discovery incomplete after {timeout:.0f} s: " + "; ".join(missing))
        if node is not None:
            import rclpy

            rclpy.spin_once(node, timeout_sec=poll_s)
        else:
            time.sleep(poll_s)
