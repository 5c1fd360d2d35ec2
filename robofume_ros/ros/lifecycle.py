"""Managed (lifecycle) nodes, as Nav2 and ros2_control run theirs.

A managed node's constructor only declares its parameters. The lifecycle manager
(`lifecycle_manager_node`), or the node itself with `autostart`, then walks it through the standard
states (lifecycle_msgs): *configure* loads its models, checkpoints and datasets and creates its
topics (a failure leaves it `unconfigured` with the reason in its log and on /diagnostics),
*activate* lets it act (command, score, train, step), *deactivate* stops that and holds the arm
safe, *cleanup* frees what configure made. `ros2 lifecycle get /policy` and `ros2 lifecycle set`
work on them as on any ROS 2 lifecycle node.

A subclass implements `configure()` (raise with a clear message on failure), and optionally
`activate()`, `deactivate()` and `close()` (free models, stop workers, save; also what runs when
the process ends). Everything it creates in `configure()` is destroyed again on cleanup or on a
failed configure, so a second configure starts clean. `self.active` says whether it may act.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from robofume_ros.ros.node import ERROR, OK, WARN, Diagnostics, DiagnosticsParams, Throttle
from robofume_ros.ros.params import knob

# the managed nodes' states, by lifecycle_msgs/State ids
STATE_NAMES = {0: "unknown", 1: "unconfigured", 2: "inactive", 3: "active", 4: "finalized"}


@dataclass
class ManagedParams(DiagnosticsParams):
    autostart: bool = knob(
        True,
        "configure and activate at start by itself; the graph's lifecycle manager sets false and "
        "brings the nodes up in order",
    )
    input_timeout_s: float = knob(
        10.0,
        "/diagnostics turns ERROR when an input this node has heard (its observations) stays silent "
        "this long while it is active (0 = never)",
        range=(0.0, 3600.0),
        runtime=True,
    )


_ENTITIES = (  # (what rclpy keeps them in, how to destroy one)
    ("publishers", "destroy_publisher"),
    ("subscriptions", "destroy_subscription"),
    ("timers", "destroy_timer"),
    ("services", "destroy_service"),
    ("clients", "destroy_client"),
)


class ManagedNode(LifecycleNode):
    """A lifecycle node whose configure() builds everything; see the module's docstring."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        self.active = False
        self.configured = False
        self.configure_error: str | None = None
        self._before: dict = {}
        # the node's health is on /diagnostics in every state: unconfigured with the reason it
        # failed, then its own report once configured
        self.diagnostics = Diagnostics(self, self._status, self.throttle)

    # --- what a subclass provides -------------------------------------------------------------
    def configure(self) -> None:
        raise NotImplementedError

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def close(self) -> None:
        pass

    def health(self):
        return OK, "configured", {}

    # --- the transitions -----------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        self._before = {kind: {id(e) for e in getattr(self, kind)} for kind, _ in _ENTITIES}
        try:
            self.configure()
        except Exception as e:  # noqa: BLE001 - any failure to load leaves the node unconfigured, reported
            self.configure_error = f"{type(e).__name__}: {e}"
            self.log.error(f"configure failed, staying unconfigured: {self.configure_error}")
            try:
                self.close()
            except Exception as e:  # noqa: BLE001 - half-built: free what can be freed, say what could not
                self.log.warning(f"close() after the failed configure raised: {type(e).__name__}: {e}")
            self._destroy_configured()
            return TransitionCallbackReturn.FAILURE
        self.configured, self.configure_error = True, None
        self.log.info("configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.diagnostics.restart_silence()
        self.activate()
        self.active = True
        self.log.info("active")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.deactivate()
        self.log.info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.release()
        self._destroy_configured()
        self.log.info("cleaned up: unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.log.error("a transition raised: going back to unconfigured")
        self.release()
        self._destroy_configured()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """close() once if configured: on cleanup, shutdown, error, or when the process ends."""
        self.active = False
        if self.configured:
            self.configured = False
            self.close()

    def _destroy_configured(self) -> None:
        for kind, destroy in _ENTITIES:
            before = self._before.get(kind, set())
            for e in [e for e in getattr(self, kind) if id(e) not in before]:
                getattr(self, destroy)(e)

    # --- health in every state -------------------------------------------------------------------
    def lifecycle_state(self) -> str:
        if self.active:
            return "active"
        return "inactive" if self.configured else "unconfigured"

    def _status(self):
        state = self.lifecycle_state()
        if not self.configured:
            if self.configure_error:
                return ERROR, f"unconfigured: configure failed: {self.configure_error}", {"lifecycle_state": state}
            return WARN, "unconfigured: waiting to be configured", {"lifecycle_state": state}
        level, message, values = self.health()
        values = {"lifecycle_state": state, **values}
        if state != "active":
            return max(level, WARN), f"inactive: {message}", values
        return level, message, values

    def autostart(self) -> bool:
        """Configure and activate now (the node runs without a manager). False when configure
        failed (the reason is logged)."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        self.trigger_activate()
        return True
