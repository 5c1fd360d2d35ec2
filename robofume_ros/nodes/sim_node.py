"""Simulated robot: a reset-free MuJoCo / Meta-World pair behind the arm command interface.

in:  /robot/command, /robot/intervention (ArmCommand), /robot/stop (Bool) -- all through the one
     CommandGate + safety envelope the arm bridge uses (ros/gate.py) --, /task_phase,
     /learner/pace (lockstep: how far the learner's updates are)
out: /camera/image_raw (Image rgb8), /robot/state (RobotState), /eval/ground_truth (GroundTruth,
     evaluation only), /sim/expert_state (privileged state for scripted experts), /clock (lockstep),
     /robot/safety (String, JSON counts)
srv: ~/home (std_srvs/Trigger)

Steps at `control_rate_hz` in wall time, or in lockstep (`lockstep:=true`): each step waits for the
command answering the last frame and advances /clock by one control period, as fast as the loop
allows, and while more than `learner_slack_steps` of the frames the learner has received lie beyond
what its updates cover it waits for them (`follow_learner`): sim time then runs as fast as learning
at the configured UTD ratio allows, so it learns what the same number of steps at 10 Hz would.
A learner that paced it and went silent (killed, restarting) holds it no longer, and until it is
back the simulator steps at `control_rate_hz` of wall time, as a real robot goes on meanwhile.
Frames the learner has not received (a link cut) hold nobody: the next live frame shows the learner
its gap and it backfills it from the recorder. A task switch copies the scene across; it never
resets it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray

from robofume_ros.ros import graph
from robofume_ros.msg import GroundTruth, LearnerPace, Reward, RobotState, TaskPhase
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import ground_truth_msgs, run_node
from robofume_ros.ros.gate import GatedRobot, GateParams
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import rgb_to_image, stamp_key


@dataclass
class Params(GateParams, ManagedParams):
    world: str = knob("drawer", "reset-free task pair: a name from `robofume tasks` or a task file (.yaml)")
    seed: int = knob(0, "random seed: the home jitter between episodes (and the scene when scene_seed is -1)")
    scene_seed: int = knob(
        -1,
        "object placement seed of the scene (the graph sets its dataset's: the demos' scene); -1: seed",
        range=(-1, 2**31 - 1),
    )
    camera: str = knob("corner4", "Meta-World camera to render (corner4, corner2, corner3, topview, behindGripper)")
    image_width: int = knob(100, "rendered frame width in pixels; keep it at the resolution the data was generated at")
    image_height: int = knob(100, "rendered frame height in pixels")
    control_rate_hz: float = knob(10.0, "simulation steps per second of (sim or wall) time", range=(0.1, 1000.0))
    lockstep: bool = knob(False, "step as fast as possible, waiting for each frame's command; publishes /clock")
    lockstep_timeout_s: float = knob(2.0, "lockstep: wall seconds to wait for a command before holding still")
    lockstep_wait_for_reward: bool = knob(
        False,
        "lockstep: also wait for the reward's verdict on the last frame before the next step, as at "
        "10 Hz the verdict comes within the tick (the fine-tuning graph sets it when it runs a reward)",
    )
    follow_learner: bool = knob(
        True,
        "lockstep: wait while more than learner_slack_steps of the frames the learner has received "
        "lie beyond what its updates cover (/learner/pace), so a run in sim time keeps its UTD ratio "
        "and learns as at 10 Hz",
    )
    learner_slack_steps: int = knob(
        10, "lockstep: control steps the simulator may run ahead of the learner's updates", range=(1, 10**6)
    )
    learner_silent_s: float = knob(
        2.0,
        "lockstep: a learner silent this long (down, restarting) no longer holds the simulator; "
        "until it is heard again the simulator steps at control_rate_hz of wall time, as a real "
        "robot goes on while its learner is away",
        range=(0.1, 3600.0),
    )
    initial_phase: str = knob("forward", "task active before the first /task_phase message")
    home_on_switch: bool = knob(
        True,
        "at every task switch the arm (never the scene) goes home, as a robot does "
        "by itself between reset-free episodes: back to its home joint configuration, "
        "then the hand to the (jittered) home position; no frames are published meanwhile",
    )
    home_jitter_m: float = knob(
        0.1, "random offset of the home pose, metres per axis (start-state diversity)", range=(0.0, 0.5)
    )


class SimNode(ManagedNode, GatedRobot):
    """Managed: configure builds the world, activate starts stepping (and publishes the first
    frame), deactivate stops stepping: the arm stays where it is."""

    OWN_FRAMES = True  # the gate knows each frame it acts on: it rendered it

    def __init__(self):
        super().__init__("sim")
        self.p = declare(self, Params)

    def configure(self):
        from robofume_ros.sim.world import ResetFreeWorld  # imports MuJoCo: only when a sim runs

        node = self
        p = self.p
        self.world = ResetFreeWorld(
            pair=p.world,
            camera=p.camera,
            image_size=(p.image_height, p.image_width),
            seed=p.scene_seed if p.scene_seed >= 0 else p.seed,
            render=True,
        )
        # the one command path (same as the arm bridge); lockstep waits for commands, so no watchdog
        self.setup_gate(p, self.world.action_dim, 1.0 / p.control_rate_hz, watchdog=not p.lockstep)
        self.obs = self.world.reset()
        self.home_rng = np.random.default_rng([p.seed, 4242])
        if p.initial_phase != "forward":
            self.obs = self.world.switch(p.initial_phase)
        self.period = 1.0 / p.control_rate_hz
        self.sim_time_ns = 0
        self._last_frame_ns = None
        self._frame_wall = time.monotonic()
        self.steps = 0

        self.pub_image = node.create_publisher(Image, graph.TOPICS["image"], qos.SENSOR)
        self.pub_state = node.create_publisher(RobotState, graph.TOPICS["state"], qos.SENSOR)
        self.pub_gt = node.create_publisher(GroundTruth, graph.TOPICS["ground_truth"], qos.RELIABLE)
        self.pub_expert = node.create_publisher(Float64MultiArray, graph.TOPICS["expert_state"], qos.SENSOR)
        self.pub_clock = node.create_publisher(Clock, "/clock", 10) if p.lockstep else None
        node.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.on_phase, qos.LATCHED)
        self._pace = (-1, -1, 0.0)  # the learner's (trained-until, received-until) stamps ns, when heard
        self._frames: deque = deque(maxlen=100_000)  # stamps of the frames the learner has not covered
        self.waited_for_learner_s = 0.0  # wall time lockstep spent waiting for the learner's updates
        self._wait_t0 = None
        self._reward_stamp_ns = None  # of the newest verdict (lockstep_wait_for_reward)
        if p.lockstep and p.lockstep_wait_for_reward:
            node.create_subscription(Reward, graph.TOPICS["reward"], self._on_reward, qos.RELIABLE)
        if p.lockstep and p.follow_learner:
            node.create_subscription(LearnerPace, graph.TOPICS["learner_pace"], self._on_pace, qos.SENSOR)
        # The simulator is the clock source: its own timers run on the steady (wall) clock even
        # when the rest of the graph uses /clock.
        wall = RosClock(clock_type=ClockType.STEADY_TIME)
        if p.lockstep:
            node.create_timer(0.001, self.lockstep_tick, clock=wall)
        else:
            node.create_timer(self.period, self.tick, clock=wall)
        node.create_timer(10.0, self.report, clock=wall)
        self.log.info(
            f"world {p.world} ({'/'.join(self.world.tasks)}), camera {p.camera} "
            f"{p.image_width}x{p.image_height}, {p.control_rate_hz} Hz{' lockstep' if p.lockstep else ''}"
        )

    def activate(self):
        self._frame_wall = time.monotonic()
        self.publish_frame()  # the first frame (again, after a pause): lockstep waits for its command

    def health(self):
        return self.gate_health()

    # --- inputs -----------------------------------------------------------------------------
    def on_phase(self, msg):
        phase = "forward" if msg.phase == 0 else "backward"
        if phase != self.world.phase:
            self.obs = self.world.switch(phase)  # copies the scene; never resets it
            note = ""
            if self.p.home_on_switch:
                n = self.world.home(self.p.home_jitter_m, self.home_rng)
                self.obs = self.world.observe()
                self.sim_time_ns += int(round(n * self.period * 1e9))  # homing takes (sim) time
                note = f", arm homed in {n} steps"
                self.publish_frame()  # the new episode's first frame; lockstep waits for its command
            self.log.info(f"switched to {phase} task {self.world.task} (episode {msg.episode_index}){note}")

    # --- stepping ---------------------------------------------------------------------------
    def _action(self) -> np.ndarray:
        """This tick's command through the gate (stop > home > intervention > policy, envelope,
        watchdog); hold still (keeping the gripper) when it says so. The workspace check runs on
        the point the command moves (the arm's target), as the arm bridge's dead reckoning does."""
        self.gate_saw_observation()  # the simulator's own state is always fresh
        t = self.gate_tick(self.world.command_origin(), frame_ns=self._last_frame_ns or 0)
        if t.action is None:
            return np.array([0.0, 0.0, 0.0, self.gate.last_gripper])
        return t.action

    def step_once(self):
        self.obs = self.world.step(self._action())
        self.steps += 1
        self.sim_time_ns += int(round(self.period * 1e9))
        self.publish_frame()

    def tick(self):
        if self.active:  # inactive: no steps, the arm stays where it is
            self.step_once()

    def _on_reward(self, msg) -> None:
        self._reward_stamp_ns = max(self._reward_stamp_ns or 0, stamp_key(msg.header.stamp))

    def _on_pace(self, msg) -> None:
        self._pace = (int(msg.trained_until_ns), int(msg.received_until_ns), time.monotonic())

    def robot_health(self) -> dict:
        if not self.p.lockstep:
            return {}
        waited = self.waited_for_learner_s + (time.monotonic() - self._wait_t0 if self._wait_t0 else 0.0)
        return {
            "sim_steps": self.steps,
            "steps_per_s": self.diagnostics.rate("steps", self.steps),
            "waited_for_learner_s": round(waited, 2),
            "learner_behind_steps": self.learner_lag_steps(),
        }

    def learner_lag_steps(self) -> int:
        """Frames of this robot the learner has received but its updates do not cover yet (0: it
        paces nobody, or is silent). Counted in frames, not sim time: homing between episodes
        advances the clock without steps to learn from. Frames beyond the newest received one (in
        flight, or lost in a link cut) hold nobody: the simulator's next frame shows the learner
        the gap, and it backfills it from the recorder."""
        until, received, _heard = self._pace
        if until < 0 or self._learner_silent():
            return 0
        frames = self._frames
        while frames and frames[0] <= until:
            frames.popleft()
        n = 0
        for f in frames:  # stamps in order
            if f > received or n > self.p.learner_slack_steps:
                break
            n += 1
        return n

    def _learner_silent(self) -> bool:
        """Nothing heard from the pacing learner for `learner_silent_s` (or never)."""
        return time.monotonic() - self._pace[2] > self.p.learner_silent_s

    def learner_away(self) -> bool:
        """A learner that paced this simulator has gone silent (killed, restarting, cut off)."""
        return self.p.follow_learner and self._pace[0] >= 0 and self._learner_silent()

    def learner_behind(self) -> bool:
        """Lockstep paced by learning: the learner (heard recently) covers steps more than the
        slack behind this simulator's newest one."""
        return self.p.follow_learner and self.learner_lag_steps() > self.p.learner_slack_steps

    def lockstep_tick(self):
        if not self.active:
            return
        now = time.monotonic()
        if self.learner_behind():
            if self._wait_t0 is None:
                self._wait_t0 = now
            return
        if self._wait_t0 is not None:
            self.waited_for_learner_s += now - self._wait_t0
            self._wait_t0 = None
        frame = self._last_frame_ns
        answered = self.last_cmd_stamp_ns is not None and frame is not None and self.last_cmd_stamp_ns >= frame
        judged = not self.p.lockstep_wait_for_reward or (
            self._reward_stamp_ns is not None and frame is not None and self._reward_stamp_ns >= frame
        )
        if self.learner_away() and now - self._frame_wall < self.period:
            # no faster than a real robot while nobody learns: a restart's backlog (for the
            # recorder to replay, the learner to backfill) is what 10 Hz makes, not what a free
            # simulator makes in the same wall seconds
            return
        if (answered and judged) or time.monotonic() - self._frame_wall > self.p.lockstep_timeout_s:
            if not answered:
                self.throttle.warn("lockstep", "no command for the last frame: stepping with the arm held")
            elif not judged:
                self.throttle.warn("lockstep_reward", "no reward verdict on the last frame: stepping without it")
            self.step_once()

    def stamp(self):
        if self.p.lockstep:
            return Time(sec=self.sim_time_ns // 1_000_000_000, nanosec=self.sim_time_ns % 1_000_000_000)
        return RosClock().now().to_msg()  # system time, whatever use_sim_time says

    def publish_frame(self):
        if self.pub_clock is not None:
            c = Clock()
            c.clock = self.stamp()
            self.pub_clock.publish(c)
        stamp = self.stamp()
        obs = self.obs
        st = RobotState()
        st.header.stamp = stamp
        st.header.frame_id = "world"
        pose = self.world.ee_pose()
        st.ee_pose.position.x, st.ee_pose.position.y, st.ee_pose.position.z = (float(v) for v in pose[:3])
        st.ee_pose.orientation.w, st.ee_pose.orientation.x, st.ee_pose.orientation.y, st.ee_pose.orientation.z = (
            float(v) for v in pose[3:7]
        )
        st.gripper_opening = float(obs.proprio[3])
        st.proprio = [float(v) for v in obs.proprio]
        st.stopped = self.gate.stopped
        self.pub_state.publish(st)
        for gt in ground_truth_msgs(self.world, obs, stamp):
            self.pub_gt.publish(gt)
        ex = Float64MultiArray()
        ex.data = [float(v) for v in obs.state]
        self.pub_expert.publish(ex)
        # the image last: the camera node and the scripted expert react to it, and by then the
        # state and expert state of the same frame are already out
        self.pub_image.publish(rgb_to_image(obs.image, stamp, frame_id="sim_camera"))
        self._last_frame_ns = stamp_key(stamp)
        if self.p.lockstep and self.p.follow_learner:
            self._frames.append(self._last_frame_ns)
        self._frame_wall = time.monotonic()

    def report(self):
        counts = {
            k: v for k, v in self.gate.counts_dict().items() if not k.startswith(("commands", "received", "executed"))
        }
        self.log.info(f"{self.steps} steps; task {self.world.task}; envelope {dict(counts) or 'no interventions'}")

    def close(self):
        if getattr(self, "world", None) is not None:
            self.world.close()


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
