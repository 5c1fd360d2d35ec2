"""ROS side of the one command path, shared by sim_node and arm_bridge_node.

`GateParams` are the safety knobs both robot nodes declare (their Params dataclasses inherit it);
`GatedRobot` wires a CommandGate (robofume_ros/safety/gate.py) to the graph:
  in:  /robot/command (ArmCommand: policy, scripted), /robot/intervention (ArmCommand from a human),
       /robot/stop (std_msgs/Bool: true latches a stop at the next tick, false releases)
  out: /robot/safety (std_msgs/String, JSON counts of every clip, rejection, stop and hold; latched,
       on change and every `safety_report_s`); /robot/executed (ArmCommand: what the arm executed
       while a person had it, once per observation, stamped with the observation of the state it
       acted on: the simulator names its own frame; an arm takes the newest observation heard
       (/observation, or the newest a policy command answered), and when that one already has its
       action, the next one to arrive stamped before the tick (a camera running late). The learner
       stores it as that step's action, also when no policy runs and a person gives demonstrations)
  srv: ~/home (std_srvs/Trigger): retreat to `home_position` through the envelope
The node calls `gate_tick(ee_position)` once per control tick and executes what it returns.
"""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from dataclasses import dataclass

from builtin_interfaces.msg import Time
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, Observation
from robofume_ros.ros.node import OK, WARN, Diagnostics, quantiles
from robofume_ros.ros.params import knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import action_to_command, command_to_action, stamp_key
from robofume_ros.safety.gate import make_gate


# the graph's command sources: the learned and scripted policies (/robot/command), teleop (/robot/intervention)
COMMAND_SOURCES = ("policy", "scripted_policy", "teleop")


@dataclass
class GateParams:
    max_translation_m: float = knob(0.01, "metres per tick for a normalized translation of 1.0 (Meta-World: 0.01)")
    max_rotation_rad: float = knob(0.05, "radians per tick for a normalized rotation of 1.0 (7-D actions)")
    workspace_low: list = knob([-0.55, 0.3, 0.03], "end-effector box lower corner x, y, z in metres (base frame)")
    workspace_high: list = knob([0.55, 1.05, 0.5], "end-effector box upper corner x, y, z in metres (base frame)")
    max_delta_per_tick: float = knob(2.0, "largest change of one action component between ticks (2.0 = no limit)")
    max_speed_m_s: float = knob(0.0, "end-effector speed limit in m/s (0 = only max_translation_m per tick)")
    max_angular_speed_rad_s: float = knob(0.0, "end-effector angular speed limit in rad/s (0 = off)")
    command_timeout_s: float = knob(0.5, "watchdog: hold still when the newest command is older than this")
    observation_timeout_s: float = knob(1.0, "watchdog: hold still when the robot state is older than this")
    intervention_hold_s: float = knob(1.0, "a human command keeps the arm for this long after the last one")
    home_position: list = knob([0.0, 0.6, 0.2], "home / retreat end-effector position x, y, z (base frame)")
    home_gripper: float = knob(-1.0, "gripper command during the home motion (-1 open, +1 closed)")
    safety_report_s: float = knob(1.0, "publish the safety counts at least this often (seconds)")
    allowed_command_nodes: list = knob(
        list(COMMAND_SOURCES),
        "names (fnmatch patterns) of the nodes whose /robot/command and /robot/intervention messages "
        "may drive the arm; a command from any other node is refused, counted and reported by name",
    )


class GatedRobot:
    """Mixin for an rclpy Node: call `setup_gate()` in __init__, `gate_tick()` every control tick,
    `gate_saw_observation()` when fresh robot state arrives, and provide `current_ee_position()`.
    A node that renders the frames itself (the simulator) sets OWN_FRAMES and passes `frame_ns`."""

    OWN_FRAMES = False

    def setup_gate(
        self,
        p: GateParams,
        action_dim: int,
        control_period_s: float,
        watchdog: bool = True,
        require_observation: bool = False,
        command_horizon_s: float = 0.0,
    ) -> None:
        self.action_dim = action_dim
        self.gate = make_gate(
            action_dim,
            p.max_translation_m,
            p.workspace_low,
            p.workspace_high,
            max_rotation_rad=p.max_rotation_rad,
            max_delta_per_tick=p.max_delta_per_tick,
            control_period_s=control_period_s,
            command_horizon_s=command_horizon_s,
            max_speed_m_s=p.max_speed_m_s,
            max_angular_speed_rad_s=p.max_angular_speed_rad_s,
            command_timeout_s=p.command_timeout_s,
            observation_timeout_s=p.observation_timeout_s,
            intervention_hold_s=p.intervention_hold_s,
            watchdog=watchdog,
            require_observation=require_observation,
        )
        self._gate_p = p
        self._last_counts = None
        self._last_hold_reason = None
        self.last_cmd_stamp_ns = None
        self._answered_ns = None  # stamp of the newest policy command: the observation it answered
        self._observed_ns = None  # stamp of the newest observation (a person acts on it with no policy)
        self._executed_ns = None  # ... of the last one an executed intervention was published for
        self._pending = None  # (action, source, tick ns): executed before its observation arrived
        self.pub_executed = self.create_publisher(ArmCommand, graph.TOPICS["executed"], qos.RELIABLE)
        self.pub_safety = self.create_publisher(String, graph.TOPICS["safety"], qos.LATCHED)
        self._allowed = list(p.allowed_command_nodes)
        self._latency_ms: deque = deque(maxlen=600)  # the last minute of frame -> command latencies
        self._queued_ms: deque = deque(maxlen=600)  # ... and how long each waited for this node's executor
        self._senders: dict[bytes, str] = {}  # publisher gid -> node name (from the ROS graph)
        for topic, human in ((graph.TOPICS["command"], False), (graph.TOPICS["intervention"], True)):
            self.create_subscription(
                ArmCommand, topic, lambda m, info, t=topic, h=human: self._on_command(m, h, t, info), qos.RELIABLE
            )
        self.create_subscription(Bool, graph.TOPICS["stop"], self._on_stop, qos.RELIABLE)
        if not self.OWN_FRAMES:
            self.create_subscription(Observation, graph.TOPICS["observation"], self._on_observation_stamp, qos.RELIABLE)
        self.create_service(Trigger, "~/home", self._srv_home)
        from rclpy.clock import Clock, ClockType

        self.create_timer(
            max(p.safety_report_s, 0.1), self.publish_safety, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        if getattr(self, "diagnostics", None) is None:  # a managed node has its own, reporting health()
            self.diagnostics = Diagnostics(self, self.gate_health, getattr(self, "throttle", None))

    def robot_health(self) -> dict:
        """The robot side's own values for /diagnostics (the simulator's pacing, ...)."""
        return {}

    def gate_health(self):
        """/diagnostics of the robot side: the safety envelope's counts and state."""
        counts = self.gate.counts_dict()
        values = {
            "executed_hz": self.diagnostics.rate(
                "executed", sum(v for k, v in counts.items() if k.startswith("executed"))
            ),
            "stopped": self.gate.stopped,
            **{f"frame_to_command_ms/{k}": v for k, v in self.command_latency_ms().items()},
            **{f"command_queued_ms/{k}": v for k, v in quantiles(self._queued_ms).items()},
            **{f"safety/{k}": v for k, v in sorted(counts.items())},
            **self.robot_health(),
        }
        refused = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("refused_source:")}
        if self.gate.stopped:
            return WARN, "stopped: holding the arm until /robot/stop false", values
        if refused:
            return WARN, f"commands refused from nodes not allowed to drive the arm: {refused}", values
        return OK, "executing commands through the safety envelope", values

    # --- inputs -----------------------------------------------------------------------------
    def _sender(self, topic: str, info) -> str:
        """The name of the node that published a message, from its publisher gid."""
        gid_info = info.get("publisher_gid") if info else None
        if not gid_info:
            return "<unknown>"
        gid = bytes(gid_info["data"])
        name = self._senders.get(gid)
        if name is None:  # a publisher not seen before: look it up in the graph
            for e in self.get_publishers_info_by_topic(topic):
                if not e.node_name or "UNKNOWN" in e.node_name:
                    continue  # discovery knows the endpoint, not yet its node: ask again next time
                ns = e.node_namespace.rstrip("/")
                self._senders[bytes(e.endpoint_gid)] = f"{ns}/{e.node_name}" if ns else e.node_name
            name = self._senders.get(gid, "<unknown>")
        return name

    def _allowed_sender(self, name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(base, pat) or fnmatch.fnmatchcase(name, pat) for pat in self._allowed)

    def command_latency_ms(self) -> dict:
        """Frame -> command latency at the robot side: the command's stamp is its observation's,
        which is the camera frame's; measured when the middleware received the command (on the
        system clock; on this node's clock as the callback runs when it runs on sim time)."""
        return quantiles(self._latency_ms)

    def _on_command(self, msg, from_intervention_topic: bool, topic: str = "", info=None):
        if self._allowed:
            sender = self._sender(topic, info)
            if not self._allowed_sender(sender):
                self.gate.counts[f"refused_source:{sender}"] += 1
                self.throttle.warn(
                    f"source:{sender}",
                    f"command on {topic} from node {sender!r} refused: not an allowed command source "
                    f"(allowed_command_nodes: {', '.join(self._allowed)})",
                )
                return
        stamp_ns = stamp_key(msg.header.stamp)
        if stamp_ns and not from_intervention_topic:
            now_ns = self.get_clock().now().nanoseconds
            received = (info or {}).get("received_timestamp") or 0
            if received and abs(now_ns - received) < 10**10:  # this node runs on the system clock
                # the time the command waited for this node's executor (e.g. while the simulator
                # homes the arm) is counted apart: it is the robot side's delay, not the path's
                self._queued_ms.append((now_ns - received) * 1e-6)
                now_ns = received
            self._latency_ms.append((now_ns - stamp_ns) * 1e-6)
        now = time.monotonic()
        human = from_intervention_topic or bool(msg.intervention)
        why = self.gate.submit(command_to_action(msg, self.action_dim), msg.source, human, now)
        self.last_cmd_stamp_ns = stamp_ns
        if not human and stamp_ns:
            self._answered_ns = max(self._answered_ns or 0, stamp_ns)
        if why is not None:
            self.throttle.warn("reject" if why.startswith("rejected") else "dropped", f"command not executed ({why})")

    def _on_observation_stamp(self, msg):
        # the latest, not the largest: one observation with a wild stamp must not stick
        self._observed_ns = stamp_key(msg.header.stamp) or None
        if self._pending is not None and self._observed_ns:
            action, source, tick_ns = self._pending
            if self._observed_ns <= (self._executed_ns or 0):
                return  # an older observation arriving late: still waiting for the one acted on
            self._pending = None
            if self._observed_ns <= tick_ns:  # taken before the arm acted: the state it acted on
                self._publish_executed(action, source, self._observed_ns)
            else:
                self.gate.counts["executed:no_observation"] += 1

    # --- what a person made the arm do -------------------------------------------------------
    def _record_executed(self, action, source: str, frame_ns: int | None) -> None:
        """Publish a person's executed action with the stamp of the observation it acted on, once
        per observation (a person at 30 Hz on a 10 Hz camera gives one action per frame)."""
        if frame_ns is not None:  # the node knows its frame
            if frame_ns and frame_ns != self._executed_ns:
                self._publish_executed(action, source, frame_ns)
            return
        newest = max(self._answered_ns or 0, self._observed_ns or 0)
        if newest and newest != self._executed_ns:
            # the one the policy last answered, or a newer one it has not answered yet, or the
            # person's own when no policy runs
            self._publish_executed(action, source, newest)
            return
        # the newest observation heard already has its action: the frame of this state is still
        # on its way (a loaded camera); it is the next one to arrive stamped before now
        if self._pending is not None:
            self.gate.counts["executed:no_observation"] += 1
        self._pending = (action, source, self.get_clock().now().nanoseconds)

    def _publish_executed(self, action, source: str, stamp_ns: int) -> None:
        self._executed_ns = stamp_ns
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        self.pub_executed.publish(action_to_command(action, stamp, source, intervention=True))

    def _on_stop(self, msg):
        if msg.data:
            was = self.gate.stopped
            self.gate.set_stop(True, "stop topic")
            if not was:
                self.get_logger().warning("stop requested: holding the arm until /robot/stop false")
        elif self.gate.stopped:
            self.gate.set_stop(False)
            self.get_logger().info("stop released")
        self.publish_safety()

    def _srv_home(self, req, res):
        pos = self.current_ee_position()
        status = self.gate.start_home(self._gate_p.home_position, self._gate_p.home_gripper, time.monotonic())
        res.success = status.startswith("homing")
        res.message = status + ("" if pos is not None else " (no end-effector position yet: waiting)")
        self.get_logger().info(f"home requested: {res.message}")
        self.publish_safety()
        return res

    def gate_saw_observation(self):
        self.gate.saw_observation(time.monotonic())

    # --- the tick ---------------------------------------------------------------------------
    def gate_tick(self, ee_position, frame_ns: int | None = None):
        """The gate's decision for this tick; logs (throttled) every clip and hold. `frame_ns`: the
        stamp of the frame of the state this tick acts on, where the node knows it (OWN_FRAMES)."""
        t = self.gate.tick(time.monotonic(), ee_position)
        if t.action is not None and t.reasons:
            self.throttle.warn("clip", f"command modified by the safety envelope: {', '.join(t.reasons)}")
        if t.action is None and t.stopped:
            reason = t.reasons[0] if t.reasons else "hold"
            if reason.split(":")[0] != (self._last_hold_reason or "").split(":")[0]:
                self.get_logger().warning(f"holding the arm: {reason}")
            self._last_hold_reason = reason
        elif t.action is not None:
            self._last_hold_reason = None
        if t.intervention and t.action is not None:
            self._record_executed(t.action, t.source or "teleop", frame_ns)
        counts = self.gate.counts_dict()
        interesting = {
            k: v
            for k, v in counts.items()
            if not k.startswith(("received", "commands", "executed", "interventions", "held:"))
        }
        if interesting != self._last_counts:
            self._last_counts = interesting
            self.publish_safety()
        return t

    def publish_safety(self):
        self.pub_safety.publish(String(data=self.gate.counts_json(node=self.get_name())))

    def log_safety_summary(self):
        self.get_logger().info(f"safety counts: {self.gate.counts_dict()}")
