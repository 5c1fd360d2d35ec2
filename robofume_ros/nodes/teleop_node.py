"""Human help: joystick / twist teleoperation as interventions, plus manual-reset requests.

in:  `joy_topic` (sensor_msgs/Joy, e.g. from joy_node), `twist_topic` (geometry_msgs/Twist, e.g. from
     teleop_twist_keyboard or a spacemouse driver)
out: /robot/intervention (ArmCommand, intervention=true, source="teleop") at `rate_hz` while the human
     is commanding (dead-man button held, or a non-zero twist newer than `input_timeout_s`); the robot
     node gives it priority over the policy and the recorder records it;
     /robot/stop (Bool true) on the stop button; /task_switcher/help (String) on a reset request;
     /reward_override (RewardOverride) on the success / not-success / undo buttons
srv: ~/request_reset (std_srvs/Trigger): pause the task switcher (`pause_service`), log and ask a
     human to reset the scene; resume with `ros2 service call /task_switcher/resume std_srvs/srv/Trigger`
action: ~/collect (robofume_ros/action/Collect; `robofume dataset collect demos|failures --remote
     --source teleop`): demonstrations or failures by hand. From the goal on, every episode the task
     switcher closes (the reward, the success / not-success buttons, the time limit) is written to
     the goal's dataset when it is what the goal asks for: a success (demos, `episodes` per
     direction) or not (failures, `episodes` in all); the steps the person drove carry what the arm
     executed (/robot/executed), the others the policy's command (online/hand_collection.py).
     Cancel stops at once; the episodes written stay.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.action import Collect
from robofume_ros.msg import ArmCommand, Observation, RewardOverride, TaskPhase
from robofume_ros.ros.node import Throttle, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import ImageError, action_to_command, command_to_action, image_to_rgb, stamp_key
from robofume_ros.ros.override import override_message


@dataclass
class Params:
    rate_hz: float = knob(10.0, "intervention commands per second while the human commands")
    action_dim: int = knob(4, "4 (xyz + gripper) or 7 (xyz + rpy + gripper)")
    joy_topic: str = knob("joy", "sensor_msgs/Joy input")
    twist_topic: str = knob("teleop/twist", "geometry_msgs/Twist input (normalized: 1.0 = full speed)")
    axes_xyz: list = knob([1, 0, 4], "Joy axes for x, y, z (negative index = inverted: -(i+1))")
    axes_rpy: list = knob([3, -1, -1], "Joy axes for roll, pitch, yaw (-1 = unused; 7-D actions)")
    axis_scale: float = knob(1.0, "normalized command for a full stick deflection")
    deadzone: float = knob(0.1, "stick values below this count as zero")
    enable_button: int = knob(4, "dead-man button (hold to command; -1 = always enabled)")
    gripper_close_button: int = knob(0, "button that closes the gripper")
    gripper_open_button: int = knob(1, "button that opens the gripper")
    stop_button: int = knob(7, "button that publishes /robot/stop true (-1 = none)")
    reset_button: int = knob(6, "button that requests a manual reset (-1 = none)")
    success_button: int = knob(2, "button: the running episode has succeeded (RewardOverride SUCCESS; -1 = none)")
    not_success_button: int = knob(
        3, "button: the running episode has not succeeded (RewardOverride NOT_SUCCESS; -1 = none)"
    )
    undo_button: int = knob(5, "button: the last verdict was wrong (RewardOverride UNDO; -1 = none)")
    input_timeout_s: float = knob(0.3, "a twist older than this no longer commands")
    pause_service: str = knob("task_switcher/pause", "std_srvs/Trigger that pauses the task switcher")
    run_dir: str = knob("", "the run's folder: a ~/collect goal without `out` writes <run_dir>/collected/<kind>")


def _axis(axes, spec: int) -> float:
    if spec is None or spec == -1:
        return 0.0
    i, sign = (spec, 1.0) if spec >= 0 else (-spec - 1, -1.0)
    return sign * float(axes[i]) if i < len(axes) else 0.0


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.p = p = declare(self, Params)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        if p.action_dim not in (4, 7):
            raise ValueError("action_dim must be 4 or 7")
        self.gripper = -1.0
        self.joy = None  # (action without gripper, enabled, t)
        self.twist = None  # (action without gripper, t)
        self._buttons = []
        self.sent = 0
        self.pub = self.create_publisher(ArmCommand, graph.TOPICS["intervention"], qos.RELIABLE)
        self.pub_stop = self.create_publisher(Bool, graph.TOPICS["stop"], qos.RELIABLE)
        self.pub_help = self.create_publisher(String, graph.TOPICS["help"], qos.LATCHED)
        self.pause_client = self.create_client(Trigger, p.pause_service)
        self.phase = None  # the newest TaskPhase: which episode a verdict is about
        self.pub_override = self.create_publisher(RewardOverride, graph.TOPICS["reward_override"], qos.RELIABLE)
        self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self._on_phase, qos.LATCHED)
        self.create_subscription(Joy, p.joy_topic, self.on_joy, 10)
        self.create_subscription(Twist, p.twist_topic, self.on_twist, 10)
        self.create_service(Trigger, "~/request_reset", self.srv_reset)
        self.create_timer(1.0 / p.rate_hz, self.tick)
        # collecting by hand: the stream is heard always and used only while a ~/collect goal runs
        self.collection = None
        self._collect_lock = threading.Lock()  # the collection, between the stream's callbacks and the goal
        self._collect_busy = threading.Lock()  # one goal at a time
        self.create_subscription(Observation, graph.TOPICS["observation"], self._collect_observation, qos.DEEP)
        for key, executed in (("command", False), ("executed", True)):
            self.create_subscription(
                ArmCommand, graph.TOPICS[key], lambda m, e=executed: self._collect_command(m, e), qos.DEEP
            )
        self.collect_server = ActionServer(
            self,
            Collect,
            "~/collect",
            execute_callback=self.execute_collect,
            goal_callback=lambda _g: GoalResponse.REJECT if self._collect_busy.locked() else GoalResponse.ACCEPT,
            cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self.log.info(
            f"teleop: {p.joy_topic} (dead-man button {p.enable_button}) and {p.twist_topic} -> "
            f"{graph.TOPICS['intervention']}"
        )

    def _on_phase(self, msg):
        self.phase = msg
        with self._collect_lock:
            if self.collection is not None:
                outcomes = dict(zip(msg.recent_episodes, msg.recent_successes))
                success = msg.last_switch_reason == TaskPhase.REASON_SUCCESS
                self.collection.phase(int(msg.episode_index), success, outcomes)

    # --- collecting by hand (~/collect) -------------------------------------------------------------
    def _collect_observation(self, obs):
        if self.collection is None:
            return
        try:
            image = image_to_rgb(obs.image)
        except ImageError as e:
            self.throttle.warn("collect_image", f"observation not collected: {e}")
            return
        direction = "backward" if obs.phase == TaskPhase.BACKWARD else "forward"
        with self._collect_lock:
            if self.collection is not None:
                self.collection.observation(
                    stamp_key(obs.header.stamp),
                    int(obs.episode_index),
                    image,
                    obs.proprio,
                    obs.instruction,
                    obs.task,
                    direction,
                )

    def _collect_command(self, msg, executed: bool):
        if self.collection is None:
            return
        a = command_to_action(msg, self.p.action_dim)
        if not np.all(np.isfinite(a)):
            return
        with self._collect_lock:
            if self.collection is not None:
                self.collection.command(stamp_key(msg.header.stamp), np.clip(a, -1.0, 1.0), executed)

    def execute_collect(self, handle):
        goal, result = handle.request, Collect.Result()
        if not self._collect_busy.acquire(blocking=False):
            result.ok, result.message = False, "refused: a collection is running (one goal at a time)"
            handle.abort()
            return result
        try:
            return self._collect(handle, goal, result)
        finally:
            self._collect_busy.release()

    def _collect(self, handle, goal, result):
        from robofume_ros.online.hand_collection import HandCollection

        out = (
            Path(goal.out) if goal.out else (Path(self.p.run_dir) / "collected" / goal.kind if self.p.run_dir else None)
        )

        def end(how: str, message: str):
            result.ok, result.message = how == "succeed", message
            (self.log.info if how == "succeed" else self.log.error)(message)
            getattr(handle, how)()
            return result

        if out is None:
            return end("abort", "refused: the goal names no out, and the node has no run_dir")
        result.dataset = str(out)
        events = []
        try:
            c = HandCollection(
                out, goal.kind, int(goal.episodes), self.p.action_dim, on_episode=lambda *e: events.append(e)
            )
        except (ValueError, OSError) as e:
            return end("abort", f"refused: {e}")
        fb = Collect.Feedback(episodes_total=c.total)
        with self._collect_lock:
            if self.phase is not None:  # the episode running now is the first one collected
                c.phase(int(self.phase.episode_index), False, {})
            self.collection = c
        self.log.info(f"collecting {c.total} {goal.kind} by hand into {out}: drive the arm, end each episode")
        stopped = None

        def report():
            while events:
                task, kept, why = events.pop(0)
                fb.task, fb.kept, fb.attempts, fb.episodes = task, bool(kept), fb.attempts + 1, fb.episodes + int(kept)
                handle.publish_feedback(fb)
                self.log.info(f"{task}: {'kept' if kept else 'not kept'} ({why}); {fb.episodes}/{c.total}")

        try:
            while not c.done and c.error is None and not handle.is_cancel_requested:
                time.sleep(0.05)
                with self._collect_lock:
                    c.poll()
                report()
            report()
            stopped = "cancelled" if handle.is_cancel_requested and not c.done else c.error
        finally:
            with self._collect_lock:
                self.collection = None
            c.finish(stopped)
        result.episodes, result.attempts = c.episodes, c.attempts
        if c.error is not None:
            return end("abort", f"stopped: {c.error}; {c.episodes} episodes are in {out}")
        if stopped == "cancelled":
            return end("canceled", f"cancelled after {c.episodes} episodes; they are in {out}")
        return end("succeed", f"collected {c.episodes} {goal.kind} by hand in {c.attempts} episodes into {out}")

    def _deadzone(self, v):
        v = np.asarray(v, dtype=np.float64)
        return np.where(np.abs(v) < self.p.deadzone, 0.0, np.clip(v * self.p.axis_scale, -1, 1))

    def on_joy(self, msg):
        p = self.p
        pressed = [i for i, b in enumerate(msg.buttons) if b]
        newly = [i for i in pressed if i not in self._buttons]
        self._buttons = pressed
        if p.gripper_close_button in pressed:
            self.gripper = 1.0
        if p.gripper_open_button in pressed:
            self.gripper = -1.0
        if p.stop_button >= 0 and p.stop_button in newly:
            self.pub_stop.publish(Bool(data=True))
            self.log.warning("stop button: /robot/stop true")
        if p.reset_button >= 0 and p.reset_button in newly:
            self.request_reset("reset button")
        for button, verdict in (
            (p.success_button, RewardOverride.SUCCESS),
            (p.not_success_button, RewardOverride.NOT_SUCCESS),
            (p.undo_button, RewardOverride.UNDO),
        ):
            if button >= 0 and button in newly:
                self.give_verdict(verdict)
        xyz = [_axis(msg.axes, a) for a in p.axes_xyz]
        rpy = [_axis(msg.axes, a) for a in p.axes_rpy]
        enabled = p.enable_button < 0 or p.enable_button in pressed
        self.joy = (self._deadzone(xyz + rpy), enabled, time.monotonic())

    def on_twist(self, msg):
        v = [msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y, msg.angular.z]
        if not np.all(np.isfinite(v)):
            self.throttle.warn("nan", "twist with NaN/Inf ignored")
            return
        self.twist = (self._deadzone(v), time.monotonic())

    def current(self):
        """The human's 6-D command now, or None when they are not commanding."""
        now = time.monotonic()
        if self.joy is not None and self.joy[1]:
            return self.joy[0]
        if self.twist is not None and now - self.twist[1] <= self.p.input_timeout_s and np.any(self.twist[0] != 0):
            return self.twist[0]
        return None

    def tick(self):
        v = self.current()
        if v is None:
            return
        a = np.append(v[:3], self.gripper) if self.p.action_dim == 4 else np.append(v[:6], self.gripper)
        self.pub.publish(action_to_command(a, self.get_clock().now().to_msg(), "teleop", intervention=True))
        self.sent += 1

    def give_verdict(self, verdict: int) -> None:
        if self.phase is None:
            self.log.warning("reward override button: no /task_phase yet, nothing sent")
            return
        m = override_message(self.phase, verdict, "joystick", self.get_clock().now().to_msg())
        if m is None:
            self.log.warning("undo button: no episode has ended yet")
            return
        self.pub_override.publish(m)
        self.log.info(f"reward override {verdict} for episode {m.episode_index}")

    def request_reset(self, why: str) -> str:
        text = (
            f"manual reset requested ({why}): the task switcher is paused; reset the scene, then call "
            f"/task_switcher/resume"
        )
        if self.pause_client.service_is_ready():
            self.pause_client.call_async(Trigger.Request())
        else:
            text += f" (warning: {self.p.pause_service} is not available, nothing was paused)"
        self.log.warning(text)
        self.pub_help.publish(String(data=text))
        return text

    def srv_reset(self, req, res):
        res.message = self.request_reset("service call")
        res.success = "not available" not in res.message
        return res


def main(args=None) -> int:
    return run_node(TeleopNode, args, executor_threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
