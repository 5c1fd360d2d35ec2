"""Scripted policy: Meta-World's expert for the active task, answering every observation.

in:  /observation, /sim/expert_state (privileged simulator state), /task_phase
out: /robot/command (ArmCommand, header.stamp = the observation's stamp, source "scripted")

With `noise_std` > 0 it collects noisy demonstrations; with `failure_prob` it sometimes replaces
the expert with random actions for a whole episode, which is how failure data is collected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, Observation
from robofume_ros.ros.node import OK, WARN, Diagnostics, DiagnosticsParams, Throttle, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import action_to_command


@dataclass
class Params(DiagnosticsParams):
    noise_std: float = knob(0.0, "std of Gaussian noise added to every expert action component")
    failure_prob: float = knob(0.0, "probability that an episode is driven by random actions instead (failure data)")
    seed: int = knob(0, "seed of the noise and failure draws")


class ScriptedPolicyNode(Node):
    def __init__(self):
        from robofume_ros.sim.world import expert_policy  # imports Meta-World

        super().__init__("scripted_policy")
        self.p = declare(self, Params)
        self._expert_policy = expert_policy
        self.rng = np.random.default_rng(self.p.seed)
        self.throttle = Throttle(self.get_logger())
        self.state = None
        self.experts = {}
        self.episode = None
        self.random_episode = False
        self.pub = self.create_publisher(ArmCommand, graph.TOPICS["command"], qos.RELIABLE)
        self.create_subscription(Float64MultiArray, graph.TOPICS["expert_state"], self.on_state, qos.SENSOR)
        self.create_subscription(Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE)
        self.commands = 0
        self.diagnostics = Diagnostics(self, self.health, self.throttle)

    def health(self):
        values = {"commands": self.commands, "rate_hz": self.diagnostics.rate("commands", self.commands)}
        if self.state is None:
            return WARN, f"no expert state on {graph.TOPICS['expert_state']} yet", values
        if not self.commands:
            return WARN, "no command sent yet (waiting for an observation with a task)", values
        return OK, f"scripted experts for {sorted(self.experts) or 'no task yet'}", values

    def on_state(self, msg):
        self.state = np.asarray(msg.data, dtype=np.float64)

    def on_observation(self, obs):
        if not obs.task:
            self.throttle.warn("notask", "observation has no task yet: no command")
            return
        if self.state is None:
            self.throttle.warn("nostate", f"no expert state on {graph.TOPICS['expert_state']} yet: no command")
            return
        if obs.episode_index != self.episode:
            self.episode = obs.episode_index
            self.random_episode = bool(self.rng.random() < self.p.failure_prob)
        if self.random_episode:
            action = self.rng.uniform(-1.0, 1.0, size=4)
        else:
            expert = self.experts.get(obs.task)
            if expert is None:
                expert = self.experts[obs.task] = self._expert_policy(obs.task)
            action = np.asarray(expert.get_action(self.state), dtype=np.float64)
            if self.p.noise_std > 0:
                action = action + self.rng.normal(0.0, self.p.noise_std, size=action.shape)
        action = np.clip(action, -1.0, 1.0)
        self.pub.publish(action_to_command(action, obs.header.stamp, source="scripted"))
        self.commands += 1


def main(args=None) -> int:
    return run_node(ScriptedPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
