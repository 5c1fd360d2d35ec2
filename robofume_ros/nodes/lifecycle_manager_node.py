"""Lifecycle manager: brings the graph's managed nodes up in order and keeps them up, as Nav2's does.

in:  <node>/get_state, <node>/change_state (lifecycle_msgs services of every managed node),
     /diagnostics (why a node failed to configure, from its own report)
out: /diagnostics (each managed node's state; ERROR while one fails to configure)
srv: ~/startup, ~/pause, ~/resume (std_srvs/Trigger): bring every node to active, deactivate them all
     (reverse order: the robot side first, so the arm stops before its policy), activate them again;
     ~/is_active (std_srvs/Trigger): success when every managed node is active, the states in message

Bring-up: every node that is unconfigured is configured (all at once: models load in parallel),
then activated in the order of `node_names`, each only once the nodes before it in its namespace
(and the shared ones above it, a fleet's learner) are active: the robot side comes last, so the
arm moves only once its reward, learner and policy act. A node whose configure fails (a model that
does not load) stays unconfigured, reported as ERROR with its reason, and is retried every
`retry_s`; the nodes after it wait (without its policy a robot never moves). A node whose process
is not up yet holds them back for up to `startup_timeout_s`. A node that dies and is respawned by
the runner comes back unconfigured: the manager configures and activates it again within
`check_period_s`, without waiting for anyone (the others are running).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from robofume_ros.interfaces import TOPICS
from robofume_ros.ros.lifecycle import STATE_NAMES
from robofume_ros.ros.node import ERROR, OK, WARN, Diagnostics, DiagnosticsParams, Throttle, run_node
from robofume_ros.ros.params import declare, knob

CONFIGURE, ACTIVATE, DEACTIVATE = (
    Transition.TRANSITION_CONFIGURE,
    Transition.TRANSITION_ACTIVATE,
    Transition.TRANSITION_DEACTIVATE,
)
UNCONFIGURED, INACTIVE, ACTIVE = (
    State.PRIMARY_STATE_UNCONFIGURED,
    State.PRIMARY_STATE_INACTIVE,
    State.PRIMARY_STATE_ACTIVE,
)


@dataclass
class Params(DiagnosticsParams):
    node_names: list = knob(
        [], "the managed nodes (relative to this namespace, or absolute), in bring-up order (the robot side last)"
    )
    autostart: bool = knob(True, "bring the nodes up (configure, activate) at start; else wait for ~/startup")
    check_period_s: float = knob(
        1.0, "how often every node's state is checked (a respawned node is brought back up)", range=(0.05, 60.0)
    )
    retry_s: float = knob(5.0, "retry a failed configure after this long", range=(0.1, 3600.0))
    startup_timeout_s: float = knob(
        300.0, "a node not up yet holds back the nodes after it this long at most", range=(0.0, 86400.0)
    )
    transition_timeout_s: float = knob(
        900.0, "longest wait for one transition (a configure loads models and datasets)", range=(1.0, 86400.0)
    )


@dataclass
class Managed:
    name: str  # fully qualified, /policy
    get: object = None
    change: object = None
    state: int = State.PRIMARY_STATE_UNKNOWN
    seen: bool = False  # reachable at least once
    failed_at: float | None = None  # monotonic time of the last failed configure
    failures: int = 0
    reason: str = ""  # the node's own report of why
    was_active: bool = False
    waiting: list = field(default_factory=list)  # the nodes its first activation waits for

    @property
    def label(self) -> str:
        if self.state in (UNCONFIGURED, State.PRIMARY_STATE_UNKNOWN) and self.failed_at is not None:
            return "unconfigured (configure failed)"
        if not self.seen:
            return "not up"
        if self.state == INACTIVE and self.waiting:
            return f"inactive (waiting for {', '.join(self.waiting)})"
        return STATE_NAMES.get(self.state, f"transitioning ({self.state})")


class LifecycleManagerNode(Node):
    def __init__(self):
        super().__init__("lifecycle_manager")
        self.p = p = declare(self, Params)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        ns = self.get_namespace().rstrip("/")
        names = [n if n.startswith("/") else f"{ns}/{n}" for n in p.node_names]  # relative: in this namespace
        if len(set(names)) != len(names):
            raise ValueError(f"node_names lists a node twice: {p.node_names}")
        clients = ReentrantCallbackGroup()
        self.nodes = [
            Managed(
                n,
                self.create_client(GetState, f"{n}/get_state", callback_group=clients),
                self.create_client(ChangeState, f"{n}/change_state", callback_group=clients),
            )
            for n in names
        ]
        self._by_diag = {f"robofume_ros{n.name}": n for n in self.nodes}
        # True: bring up and keep up; False: paused (deactivated); None: not started (autostart
        # false, before ~/startup): the nodes are left as they are, a person may drive them by hand
        self.want_active = True if p.autostart else None
        self.t0 = time.monotonic()
        self._wake = threading.Condition()
        self._pass_done = 0
        self._stop = False
        # the nodes' own reasons come from /diagnostics, read only while a node is failing (every
        # node reports there once a second: reading it all the time would cost the cores)
        self._diag_sub = None
        self.create_timer(1.0, self._follow_diagnostics)
        services = MutuallyExclusiveCallbackGroup()
        for name, cb in (
            ("~/startup", self.srv_startup),
            ("~/resume", self.srv_startup),
            ("~/pause", self.srv_pause),
            ("~/is_active", self.srv_is_active),
        ):
            self.create_service(Trigger, name, cb, callback_group=services)
        self.diagnostics = Diagnostics(self, self.health, self.throttle)
        self.worker = threading.Thread(target=self._loop, name="lifecycle-manager", daemon=True)
        self.worker.start()
        self.log.info(
            f"managing {', '.join(n.name for n in self.nodes) or 'no nodes'}"
            f"{' (bringing them up)' if self.want_active else ' (waiting for ~/startup)'}"
        )

    # --- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
            try:
                self._pass()
            except Exception as e:  # noqa: BLE001 - the manager keeps managing; the next pass retries
                self.throttle.warn("pass", f"lifecycle pass failed: {type(e).__name__}: {e}")
            with self._wake:
                self._pass_done += 1
                self._wake.notify_all()
                if self._stop:
                    return
                self._wake.wait(self.p.check_period_s)

    def _pass(self) -> None:
        for n in self.nodes:
            self._refresh(n)
        if self.want_active is None:
            return
        if not self.want_active:
            for n in reversed(self.nodes):  # the robot side first: the arm stops before its policy
                if n.state == ACTIVE:
                    self._transition([n], DEACTIVATE)
            return
        now = time.monotonic()
        todo = [
            n
            for n in self.nodes
            if n.seen and n.state == UNCONFIGURED and (n.failed_at is None or now - n.failed_at >= self.p.retry_s)
        ]
        if todo:  # all at once: their models load in parallel
            for n, ok in zip(todo, self._transition(todo, CONFIGURE)):
                if ok:
                    n.failed_at, n.reason = None, ""
                else:
                    n.failures += 1
                    if n.failed_at is None:
                        self.log.error(
                            f"{n.name} failed to configure (retrying every {self.p.retry_s:g} s); "
                            + (n.reason or "its reason follows from its /diagnostics, also in its log")
                        )
                    n.failed_at = time.monotonic()
        for i, n in enumerate(self.nodes):
            if n.state != INACTIVE:
                continue
            # the first activation waits for the nodes before it in its namespace (and the shared
            # ones above it): the robot side moves only once its reward, learner and policy act.
            # A node back from a respawn is activated at once: the others are already running.
            n.waiting = [] if n.was_active else [m.name for m in self.nodes[:i] if self._holds(m, n)]
            if not n.waiting:
                self._transition([n], ACTIVATE)

    def _holds(self, m: Managed, n: Managed) -> bool:
        """Whether `m` (before `n` in the order) holds back `n`'s first activation: it is in n's
        namespace or above it and not active -- failed to configure, configuring, or not up yet
        (that one only for startup_timeout_s)."""
        ns_m, ns_n = m.name.rsplit("/", 1)[0], n.name.rsplit("/", 1)[0]
        if m.state == ACTIVE or not (ns_n == ns_m or ns_n.startswith(ns_m + "/")):
            return False
        return m.seen or time.monotonic() - self.t0 < self.p.startup_timeout_s

    def _refresh(self, n: Managed) -> None:
        res = self._call(n.get, GetState.Request(), 2.0)
        if res is None and n.seen and n.get.service_is_ready():
            return  # busy (a learner's update holds its executor), not gone: keep the last state
        state = res.current_state.id if res is not None else State.PRIMARY_STATE_UNKNOWN
        if res is not None and not n.seen:
            n.seen = True
        self._set_state(n, state)

    def _set_state(self, n: Managed, state: int) -> None:
        if state != n.state:
            before = n.label
            n.state = state
            n.was_active = n.was_active or state == ACTIVE
            if n.seen:
                self.log.info(f"{n.name}: {before} -> {n.label}")

    def _transition(self, nodes: list, transition: int) -> list:
        """Ask each node for `transition` at once; wait for all. [succeeded] per node."""
        futures = []
        for n in nodes:
            req = ChangeState.Request()
            req.transition.id = transition
            futures.append(self._send(n.change, req))
        deadline = time.monotonic() + self.p.transition_timeout_s
        out = []
        for n, f in zip(nodes, futures):
            res = self._wait(n.change, f, max(0.0, deadline - time.monotonic()))
            ok = bool(res is not None and res.success)
            out.append(ok)
            self._refresh(n)
        return out

    def _send(self, client, req):
        if not client.service_is_ready():
            return None
        return client.call_async(req)

    def _wait(self, client, future, timeout: float):
        if future is None:
            return None
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            return None
        return future.result()

    def _call(self, client, req, timeout: float):
        return self._wait(client, self._send(client, req), timeout)

    # --- inputs -------------------------------------------------------------------------------------
    def _follow_diagnostics(self) -> None:
        failing = any(n.failed_at is not None for n in self.nodes)
        if failing and self._diag_sub is None:
            self._diag_sub = self.create_subscription(DiagnosticArray, TOPICS["diagnostics"], self._on_diagnostics, 50)
        elif not failing and self._diag_sub is not None:
            self.destroy_subscription(self._diag_sub)
            self._diag_sub = None

    def _on_diagnostics(self, arr) -> None:
        for st in arr.status:
            n = self._by_diag.get(st.name)
            if n is not None and "configure failed" in st.message:
                reason = st.message.split("configure failed:", 1)[-1].strip()
                if reason != n.reason:
                    n.reason = reason
                    self.log.error(f"{n.name} failed to configure: {reason}")

    def _request(self, active: bool, timeout: float = 60.0) -> None:
        """Set the wanted state and wait (up to `timeout`) for a full pass made after it."""
        with self._wake:
            self.want_active = active
            target = self._pass_done + 2  # the pass in progress may have started before the change
            self._wake.notify_all()
            end = time.monotonic() + timeout
            while self._pass_done < target and time.monotonic() < end:
                self._wake.wait(0.1)

    def srv_startup(self, req, res):
        self._request(True)
        return self._answer(res, ACTIVE)

    def srv_pause(self, req, res):
        self._request(False)
        return self._answer(res, INACTIVE)

    def srv_is_active(self, req, res):
        return self._answer(res, ACTIVE)

    def _answer(self, res, want: int):
        res.success = all(n.state == want for n in self.nodes)
        res.message = ", ".join(f"{n.name}: {n.label}" for n in self.nodes)
        return res

    def health(self):
        values = {f"{n.name}": n.label for n in self.nodes}
        values.update({f"{n.name}/configure_failures": n.failures for n in self.nodes if n.failures})
        failed = [n for n in self.nodes if n.failed_at is not None]
        if failed:
            return (
                ERROR,
                "; ".join(f"{n.name} failed to configure: {n.reason or 'see its log'}" for n in failed),
                values,
            )
        if self.want_active is None:
            return OK, "not started (autostart false): ~/startup brings the nodes up", values
        if not self.want_active:
            return WARN, "paused: nodes deactivated (~/resume brings them back)", values
        pending = [n.name for n in self.nodes if n.state != ACTIVE]
        if pending:
            return WARN, f"bringing up: {', '.join(pending)}", values
        return OK, f"all {len(self.nodes)} managed nodes active", values

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        self.worker.join(timeout=5)


def main(args=None) -> int:
    return run_node(LifecycleManagerNode, args, executor_threads=3)


if __name__ == "__main__":
    raise SystemExit(main())
