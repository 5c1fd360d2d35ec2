"""Stand-in arm driver + camera on top of the MuJoCo reset-free world (no arm needed).

Plays the part of a real arm's driver stack so the real-arm launch path (arm_bridge) runs and is
tested end to end:
in:  `servo_twist_topic` (geometry_msgs/TwistStamped, MoveIt Servo style; ignored until started
     through `servo_start_service` (std_srvs/Trigger) or `servo_pause_service` false (SetBool)),
     `trajectory_topic` (trajectory_msgs/JointTrajectory, joint_trajectory_controller style: the
     last point is the target), `gripper_topic` (JointTrajectory or Float64MultiArray), /task_phase
out: `joint_state_topic` (sensor_msgs/JointState, arm + gripper joints), `ee_pose_topic`
     (PoseStamped, when set), /camera/image_raw (Image rgb8), /eval/ground_truth and /sim/expert_state
     (so scripted collection and ground-truth switching work through the bridge)

The Sawyer end-effector is mocap-driven: twists become end-effector deltas; joint targets go
through forward kinematics of the configured chain to an end-effector target. Joint states are
emulated kinematically: IK of the chain to wherever the simulated hand really is. The robot's base
frame sits at `base_offset` in the sim world (empty = chosen so `home_joints` is the sim's start pose).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from robofume_ros.ros import graph
from robofume_ros.msg import GroundTruth, TaskPhase
from robofume_ros.ros.node import Throttle, ground_truth_msgs, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import rgb_to_image
from robofume_ros.safety.kinematics import Chain, matrix_to_quat_wxyz
from robofume_ros.sim.servo import TwistIntegrator

MOCAP_M_PER_ACTION = 0.01  # Meta-World: an action of 1.0 moves the mocap hand 1 cm


@dataclass
class Params:
    world: str = knob("drawer", "reset-free task pair: a name from `robofume tasks` or a task file (.yaml)")
    seed: int = knob(0, "object placement seed when scene_seed is -1")
    scene_seed: int = knob(
        -1, "object placement seed of the scene (the graph sets its dataset's); -1: seed", range=(-1, 2**31 - 1)
    )
    camera: str = knob("corner4", "Meta-World camera to render")
    image_width: int = knob(200, "camera frame width")
    image_height: int = knob(200, "camera frame height")
    control_rate_hz: float = knob(10.0, "simulation steps per second (wall time)")
    base_frame: str = knob("base", "frame id of joint states and poses")
    base_offset: list = knob([0.0], "robot base origin in the sim world x, y, z ([] or one number = automatic)")
    servo_twist_topic: str = knob("servo_node/delta_twist_cmds", "twist input (MoveIt Servo)")
    servo_start_service: str = knob("servo_node/start_servo", "std_srvs/Trigger offered like Servo on Humble")
    servo_pause_service: str = knob("servo_node/pause_servo", "std_srvs/SetBool offered like Servo on Iron+")
    servo_requires_start: bool = knob(True, "ignore twists until started, as MoveIt Servo does")
    physics_substeps: int = knob(0, "Meta-World steps per control tick (0 = control period / 12.5 ms)")
    twist_timeout_s: float = knob(
        0.3, "stop when the newest twist is older than this (Servo's incoming_command_timeout)"
    )
    trajectory_topic: str = knob("joint_trajectory_controller/joint_trajectory", "JointTrajectory input")
    joint_state_topic: str = knob("joint_states", "JointState output")
    ee_pose_topic: str = knob("", "PoseStamped output of the end-effector in base_frame ('' = none)")
    joint_names: list = knob(["joint1"], "arm joints (chain order)")
    chain_joints: list = knob([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "URDF-lite chain, 9 numbers per joint")
    chain_tool: list = knob([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "TCP in the last link: xyz, rpy")
    joint_lower: list = knob([-3.14], "joint lower limits")
    joint_upper: list = knob([3.14], "joint upper limits")
    home_joints: list = knob([0.0], "joint positions at the sim's start pose")
    gripper_topic: str = knob("", "gripper command input ('' = none)")
    gripper_message: str = knob("joint_trajectory", "joint_trajectory or float64")
    gripper_joint_names: list = knob(["gripper"], "gripper joints in the joint states")
    gripper_open_position: float = knob(0.04, "joint position of an open gripper")
    gripper_closed_position: float = knob(0.0, "joint position of a closed gripper")


class StandinDriverNode(Node):
    def __init__(self):
        from robofume_ros.sim.world import ResetFreeWorld

        super().__init__("standin_driver")
        self.p = p = declare(self, Params)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        self.period = 1.0 / p.control_rate_hz
        self.world = ResetFreeWorld(
            pair=p.world,
            camera=p.camera,
            image_size=(p.image_height, p.image_width),
            seed=p.scene_seed if p.scene_seed >= 0 else p.seed,
            render=True,
        )
        self.obs = self.world.reset()
        # The mocap weld sags under gravity (a few mm below its target); a real arm's controller
        # compensates gravity, so the stand-in reports the hand with the resting sag added back.
        if hasattr(self.world, "_step_env"):
            for _ in range(40):  # settle (0.5 s of sim time) before measuring the sag
                self.world._step_env(np.array([0.0, 0.0, 0.0, -1.0]))
            self.obs = self.world.observe()
        self.sag = self._mocap() - self.world.ee_pose()[:3]
        self.chain = Chain.from_flat(p.chain_joints, p.chain_tool, p.joint_lower, p.joint_upper)
        if len(p.joint_names) != self.chain.n or len(p.home_joints) != self.chain.n:
            raise ValueError("joint_names and home_joints must match the chain's joints")
        self.q = np.clip(np.asarray(p.home_joints, dtype=np.float64), self.chain.lower, self.chain.upper)
        home_pos, self.home_R = self.chain.fk(self.q)
        self.offset = (
            np.asarray(p.base_offset, dtype=np.float64) if len(p.base_offset) == 3 else self._hand() - home_pos
        )
        self.servo_on = not p.servo_requires_start
        self.servo = TwistIntegrator(p.twist_timeout_s)  # Servo's twist semantics
        self.q_target = None
        self.gripper_cmd = -1.0
        self.steps = 0
        self.twists_ignored = 0

        self.pub_joints = self.create_publisher(JointState, p.joint_state_topic, qos.SENSOR)
        self.pub_pose = self.create_publisher(PoseStamped, p.ee_pose_topic, qos.SENSOR) if p.ee_pose_topic else None
        self.pub_image = self.create_publisher(Image, graph.TOPICS["image"], qos.SENSOR)
        self.pub_gt = self.create_publisher(GroundTruth, graph.TOPICS["ground_truth"], qos.RELIABLE)
        self.pub_expert = self.create_publisher(Float64MultiArray, graph.TOPICS["expert_state"], qos.SENSOR)
        self.create_subscription(TwistStamped, p.servo_twist_topic, self.on_twist, 10)
        self.create_subscription(JointTrajectory, p.trajectory_topic, self.on_trajectory, 10)
        if p.gripper_topic:
            if p.gripper_message == "float64":
                self.create_subscription(
                    Float64MultiArray,
                    p.gripper_topic,
                    lambda m: self.on_gripper_position(m.data[0] if len(m.data) else None),
                    10,
                )
            else:
                self.create_subscription(
                    JointTrajectory,
                    p.gripper_topic,
                    lambda m: self.on_gripper_position(
                        m.points[-1].positions[0] if m.points and len(m.points[-1].positions) else None
                    ),
                    10,
                )
        self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.on_phase, qos.LATCHED)
        if p.servo_start_service:
            self.create_service(Trigger, p.servo_start_service, self.srv_start)
        if p.servo_pause_service:
            self.create_service(SetBool, p.servo_pause_service, self.srv_pause)
        self.create_timer(self.period, self.tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.log.info(
            f"stand-in driver: world {p.world}, base at {np.round(self.offset, 3).tolist()} in the sim, "
            f"joints {p.joint_names}, {p.control_rate_hz} Hz"
        )
        self.publish()

    # --- driver inputs ----------------------------------------------------------------------
    def srv_start(self, req, res):
        self.servo_on = True
        res.success, res.message = True, "servo started (stand-in)"
        self.log.info("servo started")
        return res

    def srv_pause(self, req, res):
        self.servo_on = not req.data
        res.success, res.message = True, "paused" if req.data else "running"
        return res

    def on_twist(self, msg):
        lin = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z], dtype=np.float64)
        if not np.all(np.isfinite(lin)):
            self.throttle.warn("nan", "twist with NaN/Inf ignored")
            return
        if not self.servo_on:
            self.twists_ignored += 1
            self.throttle.warn("off", "twist ignored: servo not started")
            return
        self.servo.command(lin, time.monotonic())

    def on_trajectory(self, msg):
        if not msg.points:
            return
        idx = {n: i for i, n in enumerate(msg.joint_names)}
        if not all(n in idx for n in self.p.joint_names):
            self.throttle.warn("names", f"trajectory lacks some of {self.p.joint_names}")
            return
        pt = msg.points[-1]
        q = np.array([pt.positions[idx[n]] for n in self.p.joint_names], dtype=np.float64)
        if np.all(np.isfinite(q)):
            self.q_target = np.clip(q, self.chain.lower, self.chain.upper)
            self.servo.clear()

    def on_gripper_position(self, pos):
        p = self.p
        if pos is None or not np.isfinite(pos):
            return
        span = p.gripper_open_position - p.gripper_closed_position
        frac_open = (pos - p.gripper_closed_position) / span if span else 0.0
        self.gripper_cmd = float(np.clip(1 - 2 * frac_open, -1, 1))

    def on_phase(self, msg):
        phase = "forward" if msg.phase == 0 else "backward"
        if phase != self.world.phase:
            self.obs = self.world.switch(phase)
            self.log.info(f"switched to {phase} task {self.world.task}")

    # --- stepping ---------------------------------------------------------------------------
    def tick(self):
        # Like a real driver: Servo integrates the twist into the setpoint (the mocap target) for as
        # long as it is the newest command (sim/servo.py); a trajectory point is an absolute setpoint
        # (FK of the joint target). Between commands the physics runs for the whole control period, so
        # the hand tracks the setpoint closely.
        now = time.monotonic()
        delta = np.zeros(3)
        if self.servo.active(now) or self.q_target is None:
            delta = self.servo.advance(now)
        else:
            target, _ = self.chain.fk(self.q_target)  # at most one Meta-World action per tick
            delta = np.clip(target + self.offset - self._mocap(), -MOCAP_M_PER_ACTION, MOCAP_M_PER_ACTION)
        self._advance(delta)
        self.steps += 1
        # emulate the joints: IK of the chain to where the hand really is (seeded by the target)
        seed = self.q_target if self.q_target is not None else self.q
        self.q, _ = self.chain.ik(seed, self._hand() - self.offset, self.home_R, iterations=8)
        if (
            self.q_target is not None
            and np.linalg.norm(self.chain.fk(self.q_target)[0] + self.offset - self._hand()) < 1e-3
        ):
            self.q_target = None  # reached
        self.publish()

    def _advance(self, delta: np.ndarray) -> None:
        """One control period of physics: the setpoint moves by `delta` (in steps of at most one
        Meta-World action, 1 cm per axis), then env steps hold it until `control period` of sim time
        has passed (a real arm keeps tracking between commands; one Meta-World step is only 12.5 ms),
        then one rendered observation."""
        g = self.gripper_cmd
        env = getattr(self.world, "_env", None)
        n = self.p.physics_substeps or (max(1, int(round(self.period / env.dt))) if env is not None else 1)
        a = delta / MOCAP_M_PER_ACTION
        k = max(1, int(np.ceil(np.max(np.abs(a)) - 1e-9)))  # moves of at most 1.0 per axis
        if not hasattr(self.world, "_step_env"):
            self.obs = self.world.step(np.append(np.clip(a, -1, 1), g))
            return
        for i in range(max(n, k)):
            self.world._step_env(np.append(a / k if i < k else np.zeros(3), g))
        self.obs = self.world.observe()

    def _hand(self) -> np.ndarray:
        """The simulated hand position (sim world frame), gravity sag compensated."""
        return self.world.ee_pose()[:3] + self.sag

    def _mocap(self) -> np.ndarray:
        """Where the mocap-driven hand is being pulled to (Meta-World's mocap body)."""
        env = getattr(self.world, "_env", None)
        if env is not None and getattr(env.data, "mocap_pos", None) is not None and len(env.data.mocap_pos):
            return np.array(env.data.mocap_pos[0], dtype=np.float64)
        return self.world.ee_pose()[:3]

    def publish(self):
        p = self.p
        stamp = self.get_clock().now().to_msg()
        pos, R = self.chain.fk(self.q)
        js = JointState()
        js.header.stamp, js.header.frame_id = stamp, p.base_frame
        opening = float(self.obs.proprio[3])
        gpos = p.gripper_closed_position + opening * (p.gripper_open_position - p.gripper_closed_position)
        js.name = list(p.joint_names) + list(p.gripper_joint_names)
        js.position = [float(v) for v in self.q] + [float(gpos)] * len(p.gripper_joint_names)
        self.pub_joints.publish(js)
        if self.pub_pose is not None:
            ps = PoseStamped()
            ps.header.stamp, ps.header.frame_id = stamp, p.base_frame
            real = self._hand() - self.offset
            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = (float(v) for v in real)
            q = matrix_to_quat_wxyz(R)
            ps.pose.orientation.w, ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z = (
                float(v) for v in q
            )
            self.pub_pose.publish(ps)
        for gt in ground_truth_msgs(self.world, self.obs, stamp):
            self.pub_gt.publish(gt)
        self.pub_expert.publish(Float64MultiArray(data=[float(v) for v in self.obs.state]))
        # the image last, as the sim node does: what reacts to it finds this frame's state already out
        self.pub_image.publish(rgb_to_image(self.obs.image, stamp, frame_id="standin_camera"))

    def close(self):
        self.world.close()


def main(args=None) -> int:
    return run_node(StandinDriverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
