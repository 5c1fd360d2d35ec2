"""Real-arm bridge: the graph's ArmCommands -> the arm driver's interface, and the arm's state back.

in:  /robot/command, /robot/intervention (ArmCommand), /robot/stop (Bool) -- through the same
     CommandGate + safety envelope as the simulator (ros/gate.py) --;
     `joint_state_topic` (sensor_msgs/JointState); `ee_pose_topic` (geometry_msgs/PoseStamped, or ""
     to compute the pose by forward kinematics of the configured chain)
out: `interface: servo`            -> geometry_msgs/TwistStamped on `servo_twist_topic` (MoveIt Servo's
                                      delta_twist_cmds); start_servo (Humble, std_srvs/Trigger) or
                                      pause_servo false (Iron+, std_srvs/SetBool) is called if offered
     `interface: joint_trajectory` -> trajectory_msgs/JointTrajectory on `trajectory_topic` (ros2_control
                                      joint_trajectory_controller) via damped-least-squares IK
     gripper (`gripper_interface`): joint_trajectory (JointTrajectory to a gripper controller),
                                      float64 (std_msgs/Float64MultiArray to a forward command controller),
                                      gripper_action (control_msgs/GripperCommand action, when importable)
                                      or none
     /robot/state (RobotState: pose in the base frame, gripper opening, proprio [x, y, z, opening])
     /robot/safety (String, JSON counts)
srv: ~/home (std_srvs/Trigger): retreat to home_position through the envelope
"""

from __future__ import annotations

import collections

import time
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robofume_ros.ros import graph
from robofume_ros.msg import RobotState
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import run_node
from robofume_ros.ros.gate import GatedRobot, GateParams
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.safety.kinematics import Chain, delta_rotation, matrix_to_quat_wxyz

INTERFACES = ("servo", "joint_trajectory")
GRIPPER_INTERFACES = ("none", "joint_trajectory", "float64", "gripper_action")


@dataclass
class Params(GateParams, ManagedParams):
    robot_name: str = knob("franka", "label for logs")
    interface: str = knob(
        "servo",
        "arm interface: servo (MoveIt Servo twist) or joint_trajectory (ros2_control + IK)",
        choices=("servo", "joint_trajectory"),
    )
    action_dim: int = knob(4, "4 (xyz + gripper) or 7 (xyz + rpy + gripper) normalized actions")
    control_rate_hz: float = knob(10.0, "commands per second sent to the driver")
    base_frame: str = knob("base", "frame of the workspace box, twists and poses")
    joint_state_topic: str = knob("joint_states", "sensor_msgs/JointState from the driver")
    ee_pose_topic: str = knob("", "geometry_msgs/PoseStamped of the end-effector in base_frame ('' = FK of the chain)")
    servo_twist_topic: str = knob("servo_node/delta_twist_cmds", "MoveIt Servo twist command topic")
    servo_start_service: str = knob("servo_node/start_servo", "std_srvs/Trigger to start Servo (Humble); '' = none")
    servo_pause_service: str = knob("servo_node/pause_servo", "std_srvs/SetBool (Iron+, false = run); '' = none")
    servo_timeout_s: float = knob(
        0.3,
        "Servo's incoming_command_timeout: a twist keeps the arm moving up to this long, so the "
        "workspace check plans each twist for it and dead-reckons twists by how long they really ran",
        range=(0.01, 10.0),
    )
    trajectory_topic: str = knob("joint_trajectory_controller/joint_trajectory", "JointTrajectory controller topic")
    trajectory_lookahead: float = knob(1.0, "time_from_start of each trajectory point, in control periods")
    latency_ticks: float = knob(
        1.0,
        "the workspace check predicts the hand this many ticks of the last command "
        "ahead of the measured pose (motion still in flight)",
    )
    joint_names: list = knob(["joint1"], "arm joints, base to tip (chain order)")
    chain_joints: list = knob(
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        "URDF-lite chain: 9 numbers per joint (origin xyz, origin rpy, axis), flattened",
    )
    chain_tool: list = knob([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "TCP in the last link: xyz, rpy")
    joint_lower: list = knob([-3.14], "joint lower limits, rad")
    joint_upper: list = knob([3.14], "joint upper limits, rad")
    ik_damping: float = knob(0.05, "damped least squares lambda")
    ik_iterations: int = knob(10, "IK iterations per control tick")
    ik_max_error_m: float = knob(0.01, "hold instead of sending a target IK cannot reach within this")
    max_joint_step_rad: float = knob(0.1, "largest joint change sent in one tick")
    resync_m: float = knob(
        0.02,
        "joint_trajectory: continue from the last commanded joints while they are within "
        "this of the measured pose (no drift from tracking error), else from the measured",
    )
    gripper_interface: str = knob(
        "none",
        "none, joint_trajectory, float64 or gripper_action",
        choices=("none", "joint_trajectory", "float64", "gripper_action"),
    )
    gripper_topic: str = knob("", "gripper command topic (or action name for gripper_action)")
    gripper_joint_names: list = knob(["gripper"], "gripper joints commanded / read from joint states")
    gripper_open_position: float = knob(0.04, "joint position (or action position) of an open gripper")
    gripper_closed_position: float = knob(0.0, "joint position of a closed gripper")
    gripper_max_effort: float = knob(20.0, "gripper_action max effort")
    gripper_deadband: float = knob(0.1, "resend the gripper command when it changes by more than this")


class ArmBridgeNode(ManagedNode, GatedRobot):
    """Managed: configure connects to the driver's topics (and starts Servo), activate lets
    commands through the gate, deactivate holds the arm (a zero twist, or a stop where it is); the
    robot's state is published in both."""

    def __init__(self):
        super().__init__("arm_bridge")
        self.p = declare(self, Params)

    def health(self):
        return self.gate_health()

    def deactivate(self):
        self.hold()

    def configure(self):
        p = self.p
        if p.interface not in INTERFACES:
            raise ValueError(f"interface must be one of {INTERFACES}, got {p.interface!r}")
        if p.gripper_interface not in GRIPPER_INTERFACES:
            raise ValueError(f"gripper_interface must be one of {GRIPPER_INTERFACES}, got {p.gripper_interface!r}")
        self.period = 1.0 / p.control_rate_hz
        self.chain = Chain.from_flat(p.chain_joints, p.chain_tool, p.joint_lower, p.joint_upper)
        if len(p.joint_names) != self.chain.n:
            raise ValueError(f"{len(p.joint_names)} joint_names for a chain of {self.chain.n} joints")
        self.setup_gate(
            p,
            p.action_dim,
            self.period,
            watchdog=True,
            require_observation=True,
            command_horizon_s=p.servo_timeout_s if p.interface == "servo" else 0.0,
        )
        self.q = None  # arm joint positions, chain order
        self.gripper_pos = None
        self.pose = None  # (position (3,), rotation (3, 3)) from the pose topic
        self.pose_t = None
        self._sent_gripper = None
        self._held = True
        self._sent = collections.deque()  # (monotonic time sent, translation) of executed commands
        self._state_t = 0.0  # monotonic time the newest arm state arrived
        self._q_cmd = None  # last joint target sent (joint_trajectory)
        self.ticks = 0

        self.pub_state = self.create_publisher(RobotState, graph.TOPICS["state"], qos.SENSOR)
        self.create_subscription(JointState, p.joint_state_topic, self.on_joints, qos.SENSOR)
        if p.ee_pose_topic:
            self.create_subscription(PoseStamped, p.ee_pose_topic, self.on_pose, qos.SENSOR)
        if p.interface == "servo":
            self.pub_twist = self.create_publisher(TwistStamped, p.servo_twist_topic, 10)
            self._start_servo()
        else:
            self.pub_traj = self.create_publisher(JointTrajectory, p.trajectory_topic, 10)
        self._setup_gripper()
        self.create_timer(self.period, self.tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(10.0, self.log_safety_summary, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.log.info(
            f"{p.robot_name}: {p.interface} interface, gripper {p.gripper_interface}, "
            f"{p.control_rate_hz} Hz, workspace {p.workspace_low}..{p.workspace_high} in {p.base_frame}"
        )

    # --- driver interfaces ----------------------------------------------------------------
    def _start_servo(self):
        """Servo must be started (Humble: ~/start_servo) or unpaused (Iron+: ~/pause_servo false).
        Call whichever the servo node offers, once it appears; never block the node."""
        from std_srvs.srv import SetBool, Trigger

        self._servo_clients = []
        if self.p.servo_start_service:
            self._servo_clients.append((self.create_client(Trigger, self.p.servo_start_service), Trigger.Request()))
        if self.p.servo_pause_service:
            self._servo_clients.append(
                (self.create_client(SetBool, self.p.servo_pause_service), SetBool.Request(data=False))
            )
        try:  # Iron+: Servo accepts twists only after switch_command_type TWIST (moveit_msgs)
            from moveit_msgs.srv import ServoCommandType

            name = (self.p.servo_pause_service or "servo_node/pause_servo").rsplit("/", 1)[0] + "/switch_command_type"
            self._servo_clients.append(
                (
                    self.create_client(ServoCommandType, name),
                    ServoCommandType.Request(command_type=ServoCommandType.Request.TWIST),
                )
            )
        except ImportError:
            pass
        self._servo_calls = {}  # client -> (future, monotonic time sent)
        self._servo_started = not self._servo_clients
        if self._servo_clients:
            self._servo_timer = self.create_timer(0.5, self._try_start_servo)

    def _try_start_servo(self):
        """Call each offered service until it answers: a service that is ready may not yet have
        matched this client's request writer, and a request it never saw is never answered, so a
        call without an answer after 2 s is sent again. Done once every offered service answered."""
        now = time.monotonic()
        for client, req in self._servo_clients:
            call = self._servo_calls.get(client)
            if call is not None and call[0].done():
                continue
            if not client.service_is_ready() or (call is not None and now - call[1] < 2.0):
                continue
            self._servo_calls[client] = (client.call_async(req), now)
            self.log.info(f"servo: called {client.srv_name}" + (" again (no answer)" if call else ""))
        answered = [(c, f.result()) for c, (f, _) in self._servo_calls.items() if f.done()]
        pending = [c for c, (f, _) in self._servo_calls.items() if not f.done()]
        if answered and not pending:
            for client, res in answered:
                if res is not None and not getattr(res, "success", True):
                    self.log.warn(f"servo: {client.srv_name} answered: {getattr(res, 'message', '')}")
            self._servo_started = True
            self._servo_timer.cancel()

    def _setup_gripper(self):
        p = self.p
        self.pub_gripper = None
        if p.gripper_interface == "joint_trajectory":
            self.pub_gripper = self.create_publisher(JointTrajectory, p.gripper_topic, 10)
        elif p.gripper_interface == "float64":
            self.pub_gripper = self.create_publisher(Float64MultiArray, p.gripper_topic, 10)
        elif p.gripper_interface == "gripper_action":
            try:
                from control_msgs.action import GripperCommand
                from rclpy.action import ActionClient
            except ImportError:
                self.log.error(
                    "gripper_interface gripper_action needs control_msgs (ros-<distro>-control-msgs), "
                    "which is not installed: THE GRIPPER IS NOT COMMANDED. Install it, or use "
                    "gripper_interface joint_trajectory / float64."
                )
                self.p.gripper_interface = "none"
                return
            self._gripper_action = (ActionClient(self, GripperCommand, p.gripper_topic), GripperCommand)

    def send_gripper(self, g: float):
        """g in [-1 open, +1 closed] -> the gripper's command, when it changed enough."""
        p = self.p
        if p.gripper_interface == "none":
            return
        if self._sent_gripper is not None and abs(g - self._sent_gripper) <= p.gripper_deadband:
            return
        self._sent_gripper = g
        frac_closed = (float(np.clip(g, -1, 1)) + 1) / 2
        pos = p.gripper_open_position + frac_closed * (p.gripper_closed_position - p.gripper_open_position)
        if p.gripper_interface == "joint_trajectory":
            m = JointTrajectory()
            m.joint_names = list(p.gripper_joint_names)
            pt = JointTrajectoryPoint(positions=[pos] * len(p.gripper_joint_names))
            pt.time_from_start = Duration(sec=0, nanosec=int(self.period * 1e9))
            m.points = [pt]
            self.pub_gripper.publish(m)
        elif p.gripper_interface == "float64":
            self.pub_gripper.publish(Float64MultiArray(data=[pos] * len(p.gripper_joint_names)))
        else:
            client, GripperCommand = self._gripper_action
            if client.server_is_ready():
                goal = GripperCommand.Goal()
                goal.command.position, goal.command.max_effort = pos, p.gripper_max_effort
                client.send_goal_async(goal)

    # --- state ------------------------------------------------------------------------------
    def on_joints(self, msg):
        idx = {n: i for i, n in enumerate(msg.name)}
        names = self.p.joint_names
        if all(n in idx for n in names):
            q = np.array([msg.position[idx[n]] for n in names], dtype=np.float64)
            if np.all(np.isfinite(q)):
                self.q = q
                if not self.p.ee_pose_topic:
                    self._state_t = time.monotonic()
                    self.gate_saw_observation()
            else:
                self.throttle.warn("nan_q", "joint state with NaN/Inf ignored")
        else:
            self.throttle.warn("names", f"joint state lacks some of {names}")
        g = [msg.position[idx[n]] for n in self.p.gripper_joint_names if n in idx and idx[n] < len(msg.position)]
        if g:
            self.gripper_pos = float(np.mean(g))

    def on_pose(self, msg):
        o = msg.pose.orientation
        pos = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
        if not np.all(np.isfinite(pos)):
            return
        w, x, y, z = o.w, o.x, o.y, o.z
        n = (w * w + x * x + y * y + z * z) ** 0.5 or 1.0
        w, x, y, z = w / n, x / n, y / n, z / n
        R = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        self.pose = (pos, R)
        self._state_t = time.monotonic()
        self.gate_saw_observation()

    def ee(self):
        """(position, rotation) of the end-effector in base_frame, or None when unknown."""
        if self.p.ee_pose_topic:
            return self.pose
        if self.q is None:
            return None
        return self.chain.fk(self.q)

    def current_ee_position(self):
        e = self.ee()
        return None if e is None else e[0]

    def gripper_opening(self) -> float:
        p = self.p
        if self.gripper_pos is None:
            return float((1 - self.gate.last_gripper) / 2)
        span = p.gripper_open_position - p.gripper_closed_position
        return float(np.clip((self.gripper_pos - p.gripper_closed_position) / span, 0, 1)) if span else 0.0

    # --- the control tick -------------------------------------------------------------------
    def tick(self):
        self.ticks += 1
        e = self.ee()
        base = self._ik_base()
        if base is not None and base is self._q_cmd:
            predicted = self.chain.fk(base)[0]  # the next target starts from the last setpoint
        else:
            predicted = None if e is None else e[0] + self._in_flight()
        if not self.active:  # inactive: the arm is held, no command goes through
            self.hold()
            self.publish_state(e, self.gate.stopped)
            return
        t = self.gate_tick(predicted)
        if t.action is None:
            self.hold()
        else:
            self.execute(t.action, e)
        self.publish_state(e, t.stopped)

    def hold(self):
        if self.p.interface == "servo":
            self.publish_twist(np.zeros(3), np.zeros(3))  # Servo halts on a zero twist
            self._sent.append((time.monotonic(), np.zeros(3)))  # the twist before it ran until now
        elif not self._held and self.q is not None:
            self.publish_trajectory(self.q)  # stop where the arm is, once
        self._q_cmd = None
        self._held = True

    def _in_flight(self) -> np.ndarray:
        """Dead reckoning for the workspace check: every translation commanded since the newest
        arm state (plus `latency_ticks` of motion still in flight when it was measured). A late or
        slow state stream then makes the check stricter, never blind. A twist (servo) moves the arm
        until the next one or Servo's timeout: each counts for as long as it really ran, so a late
        tick (a loaded machine) is not mistaken for one period of motion."""
        horizon = self._state_t - self.p.latency_ticks * self.period
        if self.p.interface != "servo":
            while self._sent and self._sent[0][0] < horizon:
                self._sent.popleft()
            return sum((dp for _t, dp in self._sent), np.zeros(3))
        # keep the newest twist sent before the horizon: it may still have been moving the arm
        while len(self._sent) >= 2 and self._sent[1][0] <= horizon:
            self._sent.popleft()
        now = time.monotonic()
        sent = list(self._sent)
        total = np.zeros(3)
        for i, (t, dp) in enumerate(sent):
            end = min(sent[i + 1][0] if i + 1 < len(sent) else now, t + self.p.servo_timeout_s)
            ran = max(0.0, end - max(t, horizon))
            total += dp / self.period * ran
        return total

    def execute(self, action, e):
        dp, dr, g = self.gate.envelope.to_physical(action)
        self._sent.append((time.monotonic(), dp))
        if self.p.interface == "servo":
            self.publish_twist(dp / self.period, dr / self.period)
        else:
            if self.q is None or e is None:
                self.throttle.warn("noq", "no joint state yet: holding")
                return
            base = self._ik_base()
            pos, R = self.chain.fk(base)  # IK is solved in the chain's own frame
            target_R = delta_rotation(dr) @ R if self.p.action_dim == 7 else R
            q, err = self.chain.ik(
                base,
                pos + dp,
                target_R,
                damping=self.p.ik_damping,
                iterations=self.p.ik_iterations,
                max_step=self.p.max_joint_step_rad,
            )
            step = np.abs(q - base)
            if err > self.p.ik_max_error_m or np.max(step) > self.p.max_joint_step_rad + 1e-9:
                self.gate.counts["held:ik"] += 1
                self.throttle.warn("ik", f"IK cannot reach the target (error {err * 1000:.1f} mm): holding")
                self.hold()
                return
            self.publish_trajectory(q)
            self._q_cmd = q
        self._held = False
        self.send_gripper(g)

    def _ik_base(self):
        """joint_trajectory: integrate from the last commanded joints (as Servo integrates its
        command), resyncing to the measured joints after a hold or when tracking lags by resync_m."""
        if self.p.interface != "joint_trajectory" or self.q is None:
            return None
        if (
            self._q_cmd is not None
            and np.linalg.norm(self.chain.fk(self._q_cmd)[0] - self.chain.fk(self.q)[0]) <= self.p.resync_m
        ):
            return self._q_cmd
        return self.q

    def publish_twist(self, lin, ang):
        m = TwistStamped()
        m.header.stamp = self.get_clock().now().to_msg()
        m.header.frame_id = self.p.base_frame
        m.twist.linear.x, m.twist.linear.y, m.twist.linear.z = (float(v) for v in lin)
        m.twist.angular.x, m.twist.angular.y, m.twist.angular.z = (float(v) for v in ang)
        self.pub_twist.publish(m)

    def publish_trajectory(self, q):
        m = JointTrajectory()
        m.header.frame_id = self.p.base_frame
        m.joint_names = list(self.p.joint_names)
        pt = JointTrajectoryPoint(positions=[float(v) for v in q])
        ns = int(self.period * self.p.trajectory_lookahead * 1e9)
        pt.time_from_start = Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        m.points = [pt]
        self.pub_traj.publish(m)

    def publish_state(self, e, stopped):
        if e is None:
            return
        pos, R = e
        st = RobotState()
        st.header.stamp = self.get_clock().now().to_msg()
        st.header.frame_id = self.p.base_frame
        st.ee_pose.position.x, st.ee_pose.position.y, st.ee_pose.position.z = (float(v) for v in pos)
        q = matrix_to_quat_wxyz(R)
        st.ee_pose.orientation.w, st.ee_pose.orientation.x, st.ee_pose.orientation.y, st.ee_pose.orientation.z = (
            float(v) for v in q
        )
        st.gripper_opening = self.gripper_opening()
        st.proprio = [float(v) for v in pos] + [st.gripper_opening]
        st.stopped = bool(stopped or self.gate.stopped)
        self.pub_state.publish(st)


def main(args=None) -> int:
    return run_node(ArmBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
