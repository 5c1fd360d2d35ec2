"""Simulated person: an experiment's stand-in for a person who overrules the reward (reward.simulated_person).

in:  /task_phase (episodes and how they ended), /eval/ground_truth (the simulator's verdict: what the
     "person" sees)
out: /reward_override (source "simulated person"): at most `budget` verdicts in the run

Only in simulation and only when asked (`simulated_person:=N`): the graph never has it otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.node import Node

from robofume_ros.msg import GroundTruth, RewardOverride, TaskPhase
from robofume_ros.reward.simulated_person import SimulatedPerson
from robofume_ros.ros import graph, qos
from robofume_ros.ros.node import OK, Diagnostics, DiagnosticsParams, Throttle, run_node
from robofume_ros.ros.params import declare, knob

SOURCE = "simulated person"


@dataclass
class Params(DiagnosticsParams):
    budget: int = knob(10, "the most verdicts it gives in the run", range=(0, 100000))
    reaction_ticks: int = knob(
        5, "control ticks a task stays done before it says 'success now' (the reward's debounce is shorter)",
        range=(0, 1000),
    )  # fmt: skip


class SimulatedPersonNode(Node):
    def __init__(self):
        super().__init__("simulated_person")
        self.p = declare(self, Params)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        self.person = SimulatedPerson(self.p.budget, self.p.reaction_ticks)
        self.pub = self.create_publisher(RewardOverride, graph.TOPICS["reward_override"], qos.RELIABLE)
        self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.on_phase, qos.LATCHED_DEEP)
        self.create_subscription(GroundTruth, graph.TOPICS["ground_truth"], self.on_ground_truth, qos.RELIABLE)
        self.diagnostics = Diagnostics(self, self.health, self.throttle)
        self.log.info(f"a simulated person watches the simulator and gives at most {self.p.budget} verdicts")

    def health(self):
        kinds = {RewardOverride.SUCCESS: "success", RewardOverride.UNDO: "undo"}
        values = {"budget": self.person.budget, "given": self.person.used}
        for verdict, name in kinds.items():
            values[f"given/{name}"] = sum(v == verdict for v, _ in self.person.given)
        return OK, f"{self.person.used} of {self.person.budget} verdicts given", values

    def on_phase(self, msg):
        self._send(self.person.phase(msg.episode_index, msg.task, msg.last_switch_reason))

    def on_ground_truth(self, msg):
        self._send(self.person.ground_truth(msg.task, msg.success))

    def _send(self, verdicts):
        for verdict, episode in verdicts:
            m = RewardOverride()
            m.header.stamp = self.get_clock().now().to_msg()
            m.episode_index, m.verdict, m.source = int(episode), int(verdict), SOURCE
            self.pub.publish(m)
            what = "success now" if verdict == RewardOverride.SUCCESS else "undo"
            self.log.info(f"{what} on episode {episode} ({self.person.used} of {self.person.budget})")


def main(args=None) -> int:
    return run_node(SimulatedPersonNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
