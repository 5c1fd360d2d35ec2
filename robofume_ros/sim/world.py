"""Reset-free Meta-World worlds for RoboFuME.

Two kinds of world share one API (:class:`_WorldBase`):

* :class:`ResetFreeWorld` -- the *target* setting. A forward and a backward Meta-World v3 env
  are built on the same scene and object placement, the scene is reset once, and
  :meth:`ResetFreeWorld.switch` copies the full MuJoCo integration state (time, qpos, qvel,
  act, warm start, ctrl, applied forces, mocap pose, equality flags) from the active env into
  the other one, so changing the active task never resets anything. Meta-World's 500-step
  path-length limit is neutralised (the counter is rewound without touching the scene) so the
  world runs indefinitely.
* :class:`SingleTaskWorld` -- *prior* data "collected at another institution": one other
  Meta-World task, rendered from a camera pose and with lighting perturbed deterministically
  from a seed; it resets per episode.

Observations (:class:`Obs`): a uint8 RGB image ``(H, W, 3)`` right side up (or ``None`` in
render-free mode), a proprioceptive vector, the simulator's ground-truth success of the
active task, the task id, the phase and the world's step counter.

Proprioception (``PROPRIO_DIM = 4``, float32, identical for every task and pair)::

    proprio = [x, y, z, gripper_opening]

``x, y, z`` is the Sawyer end-effector (body ``hand``) position in metres in the world frame;
``gripper_opening`` is the distance between the two claws divided by 0.1 m, clipped to
[0, 1] (1 = fully open) -- exactly Meta-World's own ``obs[:4]``. The gripper orientation is
fixed in Meta-World (the mocap quaternion is constant), so it is not part of proprio; it is
available from :meth:`_WorldBase.ee_pose`.

Actions: ``np.ndarray`` of shape ``(4,)``: end-effector delta xyz (1.0 = 1 cm per step) and
the gripper command (+1 close, -1 open), each clipped to [-1, 1]. NaN or inf raises
``ValueError``.

Rendering uses one ``mujoco.Renderer`` per world with shadows and multisample anti-aliasing
turned off (``model.vis.quality.shadowsize = 0``, ``offsamples = 0``) and Meta-World's site
markers (goal spheres etc.) hidden, so images never reveal the goal. ``MUJOCO_GL`` must be
chosen before MuJoCo is first imported; this module defaults it to ``egl`` (headless).

Use a world from one thread at a time (it owns a GL context and two MjData). Measured on the
shared 2-core dev box with software GL (llvmpipe): about 2,000-3,000 steps/s render-free and
60-90 steps/s rendering 100x100 or 128x128 (roughly 10 ms per frame; see ``python -m
robofume_ros.sim.bench``). This module never imports rclpy.
"""

from __future__ import annotations

import atexit
import os
import warnings
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass, field
from typing import Any, Optional

import mujoco
import numpy as np

from robofume_ros.sim import tasks as _tasks

PROPRIO_DIM = 4
ACTION_DIM = 4
PHASES = ("forward", "backward")
DEFAULT_CAMERA = "corner4"
DEFAULT_IMAGE_SIZE = (100, 100)
# Cameras that render right side up in Meta-World v3 ("corner" renders upside down).
GOOD_CAMERAS = ("corner4", "corner2", "corner3", "topview", "behindGripper")
_PATH_LENGTH_REWIND = 400  # rewind Meta-World's path counter before it hits 500
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


@dataclass
class Obs:
    """One observation of a world."""

    image: Optional[np.ndarray]  # uint8 (H, W, 3), or None in render-free mode
    proprio: np.ndarray  # float32 (PROPRIO_DIM,): hand xyz + gripper opening
    success: bool  # simulator ground truth for the ACTIVE task
    task: str  # active task id, e.g. "drawer-open"
    phase: str  # "forward" / "backward" (SingleTaskWorld: always "forward")
    sim_step: int  # world steps since construction (never rewound by switch or path limit)
    state: np.ndarray = field(default=None, repr=False)  # Meta-World 39-d state vector (debug / experts)


@dataclass(frozen=True)
class VisualPerturbation:
    """A camera-pose and lighting change (deterministic from a seed) for prior-data worlds."""

    cam_shift: tuple = (0.0, 0.0, 0.0)  # metres, world frame
    cam_rot_axis_angle: tuple = (0.0, 0.0, 1.0, 0.0)  # unit axis xyz + angle (rad), world frame
    fovy_delta: float = 0.0  # degrees
    light_diffuse_scale: tuple = (1.0, 1.0, 1.0)  # per light
    light_tint: tuple = (1.0, 1.0, 1.0)  # rgb multiplier for all lights
    light_dir_delta: tuple = ((0.0, 0.0, 0.0),) * 3  # added to each light's direction
    headlight_ambient: float = 0.4
    headlight_diffuse: float = 0.4

    @classmethod
    def from_seed(cls, seed: int, strength: float = 1.0) -> "VisualPerturbation":
        """A clearly visible but task-preserving perturbation: camera moved by 4-8 cm and
        turned 4-8 degrees, lights re-aimed, re-tinted and dimmed/brightened."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))

        def signed(lo, hi, size=None):
            mag = rng.uniform(lo, hi, size)
            return mag * rng.choice([-1.0, 1.0], size)

        shift = rng.normal(size=3)
        shift = shift / np.linalg.norm(shift) * rng.uniform(0.04, 0.08) * strength
        axis = rng.normal(size=3)
        axis = axis / np.linalg.norm(axis)
        angle = float(np.deg2rad(rng.uniform(4.0, 8.0)) * strength)
        return cls(
            cam_shift=tuple(shift.tolist()),
            cam_rot_axis_angle=(*axis.tolist(), angle),
            fovy_delta=float(signed(2.0, 6.0) * strength),
            light_diffuse_scale=tuple((1.0 + signed(0.3, 0.7, 3) * strength).clip(0.2, 2.5).tolist()),
            light_tint=tuple((1.0 + rng.uniform(-0.25, 0.25, 3) * strength).tolist()),
            light_dir_delta=tuple(tuple(v) for v in (rng.normal(0, 0.35 * strength, (3, 3))).tolist()),
            headlight_ambient=float(np.clip(0.4 + signed(0.1, 0.25) * strength, 0.05, 0.9)),
            headlight_diffuse=float(np.clip(0.4 + signed(0.1, 0.25) * strength, 0.05, 0.9)),
        )

    def apply(self, model: mujoco.MjModel, camera: str) -> None:
        cid = model.camera(camera).id
        model.cam_pos[cid] = model.cam_pos[cid] + np.asarray(self.cam_shift)
        ax = np.asarray(self.cam_rot_axis_angle[:3], dtype=np.float64)
        ang = float(self.cam_rot_axis_angle[3])
        if ang != 0.0:
            rot = np.zeros(4)
            mujoco.mju_axisAngle2Quat(rot, ax / np.linalg.norm(ax), ang)
            q = np.zeros(4)
            # cam_quat is relative to the parent body; Meta-World cameras hang off worldbody.
            mujoco.mju_mulQuat(q, rot, model.cam_quat[cid].copy())
            model.cam_quat[cid] = q
        model.cam_fovy[cid] = float(np.clip(model.cam_fovy[cid] + self.fovy_delta, 20.0, 100.0))
        tint = np.asarray(self.light_tint)
        for i in range(model.nlight):
            s = self.light_diffuse_scale[i % len(self.light_diffuse_scale)]
            model.light_diffuse[i] = np.clip(model.light_diffuse[i] * s * tint, 0.0, 1.0)
            d = model.light_dir[i] + np.asarray(self.light_dir_delta[i % len(self.light_dir_delta)])
            if d[2] > -0.2:  # keep lights pointing down at the table
                d[2] = -0.2
            model.light_dir[i] = d / np.linalg.norm(d)
        model.vis.headlight.ambient[:] = self.headlight_ambient * tint
        model.vis.headlight.diffuse[:] = self.headlight_diffuse * tint


_LIVE_WORLDS: "weakref.WeakSet[_WorldBase]" = weakref.WeakSet()


_ATEXIT_REGISTERED = False


def _ensure_headless_gl() -> None:
    """If MuJoCo was imported before this module with MUJOCO_GL unset (so it picked GLFW) and
    there is no X display, switch MuJoCo's offscreen context to EGL before the first Renderer."""
    from mujoco import gl_context

    ctx = getattr(gl_context, "GLContext", None)
    if ctx is None or os.environ.get("DISPLAY") or "glfw" not in getattr(ctx, "__module__", ""):
        return
    if os.environ.get("MUJOCO_GL", "").lower() not in ("", "egl"):
        return
    try:
        from mujoco.egl import GLContext as EglContext
    except ImportError:  # PYOPENGL_PLATFORM set to something else: leave it to the user
        return
    gl_context.GLContext = EglContext


def _close_all_renderers() -> None:
    # Free GL contexts while EGL is still loaded (avoids noisy errors from
    # mujoco.Renderer.__del__ during interpreter shutdown).
    for w in list(_LIVE_WORLDS):
        try:
            w.close()
        except Exception:  # noqa: BLE001 - best-effort cleanup of renderers at exit
            pass


def _make_camera_upright(model: mujoco.MjModel, camera: str) -> bool:
    """Meta-World's corner cameras (corner, corner2, corner3, corner4) are specified with their
    image 'up' axis pointing at the floor, so mujoco.Renderer draws them upside down. Spin such
    a camera 180 degrees about its viewing axis (a rotation, not a mirror). Only fixed cameras
    on the world body are touched. Returns True if the camera was changed."""
    cid = model.camera(camera).id
    if model.cam_bodyid[cid] != 0 or model.cam_mode[cid] != mujoco.mjtCamLight.mjCAMLIGHT_FIXED:
        return False
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, model.cam_quat[cid])
    if R.reshape(3, 3)[2, 1] >= 0.0:  # camera y (image up) already has a world-up component
        return False
    q = np.zeros(4)
    mujoco.mju_mulQuat(q, model.cam_quat[cid].copy(), np.array([0.0, 0.0, 0.0, 1.0]))  # 180 deg about camera z
    model.cam_quat[cid] = q
    return True


def _make_env(task: str):
    """Build a raw Meta-World v3 env for a task id, goal observable (the experts need it)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    cls = ALL_V3_ENVIRONMENTS[_tasks.env_name(task)]
    env = cls()
    env._partially_observable = False
    try:
        del env.sawyer_observation_space  # cached_property: recompute with the goal visible
    except AttributeError:
        pass
    env._set_task_called = True
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True  # placements from env.np_random (seeded below), not np.random
    return env


def expert_policy(task: str):
    """Meta-World's scripted expert for `task`: `.get_action(state39) -> (4,)`."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[_tasks.env_name(task)]()


def _check_action(action: Any) -> np.ndarray:
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},) [dx, dy, dz, gripper], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {a.tolist()}; refusing to step the simulator")
    return np.clip(a, -1.0, 1.0)


def _check_size(image_size) -> tuple[int, int]:
    h, w = (int(image_size), int(image_size)) if np.isscalar(image_size) else (int(image_size[0]), int(image_size[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    return h, w


class _WorldBase:
    """Shared machinery: rendering, stepping one active Meta-World env, proprio, experts."""

    action_dim = ACTION_DIM
    proprio_dim = PROPRIO_DIM

    def __init__(self, camera: str, image_size, render: bool, seed: int, upright: bool = True):
        self.camera = camera
        self.upright = bool(upright)
        self.reflections = False
        self.skybox = True
        self.image_size = _check_size(image_size)
        self.render_enabled = bool(render)
        self.seed = int(seed)
        self.sim_step = 0
        self.reset_count = 0
        self._renderer: Optional[mujoco.Renderer] = None
        self._render_model = None
        self._scene_option = mujoco.MjvOption()
        self._scene_option.sitegroup[:] = 0  # hide goal/target markers
        self._env = None  # the active Meta-World env
        self._task = None
        self._phase = "forward"
        self._state_obs: Optional[np.ndarray] = None  # Meta-World 39-d obs of the active env
        self._success = False
        self._info: dict = {}
        self._policies: dict[str, Any] = {}

    # ----------------------------------------------------------------- rendering
    def _check_camera(self, model: mujoco.MjModel) -> None:
        try:
            model.camera(self.camera)
        except KeyError as e:
            raise ValueError(f"unknown camera {self.camera!r}; Meta-World cameras: {GOOD_CAMERAS}") from e

    def _prepare_models(self, models, perturbation: Optional["VisualPerturbation"]) -> None:
        """Apply the camera/lighting changes to EVERY model of the world: the camera pose and
        light directions used for drawing are computed into each env's own MjData from its own
        model, and any env's data may be rendered (whichever task is active)."""
        for model in models:
            self._check_camera(model)
            if perturbation is not None:
                perturbation.apply(model, self.camera)
            if self.upright:
                _make_camera_upright(model, self.camera)

    def _setup_renderer(self, model: mujoco.MjModel) -> None:
        if not self.render_enabled:
            return
        h, w = self.image_size
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), w)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), h)
        if self._renderer is not None:
            self._renderer.close()
        _ensure_headless_gl()
        self._renderer = mujoco.Renderer(model, height=h, width=w)
        # Planar reflections cost about half the frame time under software GL (llvmpipe)
        # for an almost invisible difference at 100x100; the skybox is kept (it is the background).
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.reflections)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = int(self.skybox)
        self._render_model = model
        _LIVE_WORLDS.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:
            # Registered after mujoco's EGL module (imported by the first Renderer) registered
            # its display teardown, so ours runs first (atexit is last-in, first-out).
            atexit.register(_close_all_renderers)
            _ATEXIT_REGISTERED = True

    def render(self) -> Optional[np.ndarray]:
        """RGB uint8 (H, W, 3) of the current scene from the world camera, or None if render-free."""
        if self._renderer is None:
            return None
        # All envs of a world are built from the same XML, so the render model's geometry
        # matches the active env's data (only the hidden goal sites differ).
        self._renderer.update_scene(self._env.data, camera=self.camera, scene_option=self._scene_option)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - __del__ during interpreter shutdown: nothing to report to
            pass

    # ----------------------------------------------------------------- properties
    @property
    def task(self) -> str:
        return self._task

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def instruction(self) -> str:
        return _tasks.instruction(self._task)

    @property
    def proprio(self) -> np.ndarray:
        """[hand x, hand y, hand z, gripper opening in [0, 1]] (float32)."""
        return np.asarray(self._env._get_curr_obs_combined_no_goal()[:PROPRIO_DIM], dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        """Meta-World's 39-d state vector of the active env (what the scripted experts read)."""
        return self._state_obs.copy()

    @property
    def info(self) -> dict:
        """Meta-World's info dict from the last step (empty right after reset/switch)."""
        return dict(self._info)

    def ee_pose(self) -> np.ndarray:
        """End-effector pose: [x, y, z, qw, qx, qy, qz] of body 'hand' in the world frame."""
        body = self._env.data.body("hand")
        return np.concatenate([body.xpos, body.xquat]).astype(np.float64)

    def command_origin(self) -> np.ndarray:
        """Where the next action's displacement starts: Meta-World adds it to the hand's mocap
        target, not to the hand. The two agree while the hand moves freely; a hand blocked by an
        object or the table stays put while the target runs on (15 cm below the table after a
        policy pressed down for a while), and the weld then drags the hand out of any box that was
        checked against the hand. The safety envelope bounds this point (x, y, z, metres)."""
        return np.asarray(self._env.data.mocap_pos[0], dtype=np.float64).copy()

    def object_qpos(self) -> np.ndarray:
        """qpos entries after the arm's 9 (the scene's objects: drawer slide, window slide, ...)."""
        return self._env.data.qpos[9:].copy()

    def ground_truth_success(self) -> bool:
        """The simulator's ``info['success']`` for the active task in the current state."""
        return bool(self._success)

    # ----------------------------------------------------------------- stepping
    def _refresh(self) -> None:
        """Recompute the state vector and success of the active env without stepping."""
        env = self._env
        mujoco.mj_forward(env.model, env.data)
        env._prev_obs = env._get_curr_obs_combined_no_goal()
        obs = env._get_obs()
        obs = np.clip(obs, env.sawyer_observation_space.low, env.sawyer_observation_space.high)
        self._state_obs = obs
        _, info = env.evaluate_state(obs, np.zeros(ACTION_DIM, dtype=np.float32))
        self._success = bool(info["success"])
        self._info = {}

    def _step_env(self, action: np.ndarray) -> None:
        env = self._env
        if env.curr_path_length >= _PATH_LENGTH_REWIND:
            env.curr_path_length = 0  # only the truncation counter; the scene is untouched
        obs, _reward, _term, _trunc, info = env.step(action.astype(np.float32))
        self._state_obs = obs
        self._success = bool(info["success"])
        self._info = info
        self.sim_step += 1

    def step(self, action) -> Obs:
        """Apply one 4-D action (delta xyz + gripper, clipped to [-1, 1]) and return the new Obs."""
        self._step_env(_check_action(action))
        return self.observe()

    def observe(self) -> Obs:
        return Obs(
            image=self.render() if self.render_enabled else None,
            proprio=self.proprio,
            success=self._success,
            task=self._task,
            phase=self._phase,
            sim_step=self.sim_step,
            state=self._state_obs.copy(),
        )

    def scripted_action(self, noise_std: float = 0.0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """Meta-World's scripted expert action for the ACTIVE task in the current state,
        plus optional Gaussian noise (std ``noise_std``), clipped to [-1, 1]. float32 (4,)."""
        pol = self._policies.get(self._task)
        if pol is None:
            pol = self._policies[self._task] = expert_policy(self._task)
        with warnings.catch_warnings():  # "Constant(s) may be too high": the expert clips anyway
            warnings.simplefilter("ignore", UserWarning)
            a = np.asarray(pol.get_action(self._state_obs), dtype=np.float64)
        if noise_std > 0:
            rng = rng if rng is not None else np.random.default_rng()
            a = a + rng.normal(0.0, noise_std, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class ResetFreeWorld(_WorldBase):
    """A reset-free forward/backward Meta-World pair sharing one scene.

    ``ResetFreeWorld(pair="drawer", camera="corner4", image_size=(100, 100), seed=0,
    render=True, visual_seed=None)``. ``seed`` fixes the object placement (and therefore, with
    the deterministic simulator, every later image and state). ``visual_seed`` optionally
    perturbs camera and lighting as :class:`SingleTaskWorld` does (default: unperturbed).

    Call :meth:`reset` once, then :meth:`step` forever; :meth:`switch` changes the active task
    without touching the scene. ``reset_count`` counts full scene resets.
    """

    def __init__(
        self,
        pair: str = _tasks.DEFAULT_PAIR,
        camera: str = DEFAULT_CAMERA,
        image_size=DEFAULT_IMAGE_SIZE,
        seed: int = 0,
        render: bool = True,
        visual_seed: Optional[int] = None,
    ):
        super().__init__(camera, image_size, render, seed)
        self.pair = _tasks.get_pair(pair)
        if not self.pair.simulated:
            raise ValueError(f"pair {self.pair.name!r} is a real robot's task (simulated: false): no world to build")
        self._envs = {ph: _make_env(self.pair.task(ph)) for ph in PHASES}
        # Placement comes from the forward env's seeded sampler; the backward env reuses it.
        self._envs["forward"].seed(self.seed)
        self._envs["backward"].seed(self.seed)
        self.switch_count = 0
        self._state_buf = np.zeros(mujoco.mj_stateSize(self._envs["forward"].model, _STATE_SPEC))
        self.perturbation = None if visual_seed is None else VisualPerturbation.from_seed(visual_seed)
        self._prepare_models([e.model for e in self._envs.values()], self.perturbation)
        self._setup_renderer(self._envs["forward"].model)
        self._env = self._envs["forward"]
        self._task = self.pair.forward
        self._reset_done = False
        m = self._env.model  # the arm's joints (Sawyer right_j0..right_j6): qpos and velocity addresses
        arm = [
            j for j in range(m.njnt) if (mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or "").startswith("right_j")
        ]
        self._arm_qpos, self._arm_dof = m.jnt_qposadr[arm].copy(), m.jnt_dofadr[arm].copy()
        self._home_qpos = None

    @property
    def tasks(self) -> tuple[str, str]:
        return self.pair.tasks

    @property
    def instruction(self) -> str:
        return self.pair.instruction(self._phase)

    def reset(self) -> Obs:
        """Full scene reset (new placement from the seeded sampler; meant to happen once).
        The forward task becomes active. Increments ``reset_count``."""
        fwd, bwd = self._envs["forward"], self._envs["backward"]
        fwd._freeze_rand_vec = False
        fwd.reset()
        fwd._freeze_rand_vec = True
        bwd._last_rand_vec = np.array(fwd._last_rand_vec, copy=True)
        bwd._freeze_rand_vec = True
        bwd.reset()  # same placement; sets the backward task's goal bookkeeping
        if self.pair.inverse_placement:
            self._invert_backward_placement(fwd, bwd)
        self.reset_count += 1
        self._reset_done = True
        self._phase = "forward"
        self._task = self.pair.forward
        self._env = fwd
        # Copy the forward start into the backward env too, so both hold the same scene.
        self._copy_state(fwd, bwd)
        # the arm's home configuration (joints, hand at hand_init_pos): what home() returns it to
        self._home_qpos = fwd.data.qpos[self._arm_qpos].copy()
        self._refresh()
        return self.observe()

    def _invert_backward_placement(self, fwd, bwd) -> None:
        """The backward task undoes the forward one: its object starts at the forward goal and its
        goal is the forward object start (x, y; the backward env keeps its own goal height), and
        the bodies each env's reset placed in its own model are the forward model's."""
        for body in self.pair.shared_bodies:
            bwd.model.body(body).pos = fwd.model.body(body).pos.copy()
        goal = np.array(bwd._target_pos, dtype=np.float64).copy()
        goal[:2] = np.asarray(fwd.obj_init_pos, dtype=np.float64)[:2]
        bwd._target_pos = goal
        bwd.obj_init_pos = np.array(fwd._target_pos, dtype=np.float64).copy()
        bwd.model.site("goal").pos = goal

    def _copy_state(self, src, dst) -> None:
        mujoco.mj_getState(src.model, src.data, self._state_buf, _STATE_SPEC)
        mujoco.mj_setState(dst.model, dst.data, self._state_buf, _STATE_SPEC)
        mujoco.mj_forward(dst.model, dst.data)

    def switch(self, phase: str) -> Obs:
        """Make ``phase`` ("forward"/"backward") active, carrying the full sim state across.
        Switching to the already-active phase is a no-op. Never resets the scene."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self._require_reset()
        if phase != self._phase:
            src, dst = self._env, self._envs[phase]
            self._copy_state(src, dst)
            dst.curr_path_length = 0
            self._env = dst
            self._phase = phase
            self._task = self.pair.task(phase)
            self.switch_count += 1
            self._refresh()
        return self.observe()

    def _require_reset(self) -> None:
        if not self._reset_done:
            raise RuntimeError("call reset() once before stepping or switching a ResetFreeWorld")

    def step(self, action) -> Obs:
        self._require_reset()
        return super().step(action)

    @property
    def home_position(self) -> np.ndarray:
        """The hand's home position (x, y, z), where home() returns it before any jitter."""
        self._require_reset()
        return np.asarray(self._env.hand_init_pos, np.float64).copy()

    def home(
        self,
        jitter: float = 0.0,
        rng: Optional[np.random.Generator] = None,
        max_steps: int = 150,
        tolerance: float = 0.005,
        joints: bool = True,
    ) -> int:
        """Move the ARM (never the scene) back to its home pose, plus a uniform random offset of up to
        ``jitter`` metres per axis: what a robot does by itself between reset-free episodes. The
        gripper opens, the hand backs off 3 cm towards the robot (so it does not drag an object
        along), then the arm returns to its home joint configuration (``joints``; see below) and
        the hand goes to the target, rising to the home height before moving sideways.
        Physics runs, nothing renders, no frame is produced. Returns the simulator steps used.

        ``joints``: a real arm homes in joint space, to one fixed configuration. The 7-joint arm is
        redundant for the 3-D hand position the policy commands, so moving only the hand back lets
        the elbow and wrist drift from episode to episode over a long reset-free run; the camera
        sees a differently posed arm and a policy trained from homed demos fails from there (a
        fixed policy's forward success 75% from homed starts, 44% in a long reset-free loop).
        The joint move is made the way Meta-World's own reset places the arm: the joints are set
        to the configuration recorded at reset() (hand at the home position), the hand's mocap
        target with them, and the physics settles. False: Cartesian homing only (the old behaviour)."""
        self._require_reset()
        target = self.home_position
        if jitter > 0:
            rng = rng if rng is not None else np.random.default_rng()
            target = target + rng.uniform(-jitter, jitter, 3)
        render, self.render_enabled = self.render_enabled, False
        n = 0
        try:
            # back off 3 cm towards the robot first (gripper open): a hand hooked behind a handle
            # would otherwise drag the object along when it rises
            y0 = self.proprio[1]
            while n < 10 and self.proprio[1] > y0 - 0.03:
                self._step_env(np.array([0.0, -1.0, 0.0, -1.0]))
                n += 1
            if joints:
                n += self._home_joints()
            first = n + 1
            for n in range(first, max_steps + 1):  # noqa: B007 - n, the steps used, is returned
                hand = self.proprio[:3].astype(np.float64)
                err = target - hand
                if np.linalg.norm(err) <= tolerance:
                    break
                if hand[2] < target[2] - 0.02 and np.linalg.norm(err[:2]) > 0.02:
                    err = np.array([0.0, 0.0, target[2] - hand[2]])  # rise first
                # Meta-World moves the mocap by action/100 m per step: a proportional step, clipped
                self._step_env(np.concatenate([np.clip(err * 50.0, -1.0, 1.0), [-1.0]]))
        finally:
            self.render_enabled = render
        return n

    def _home_joints(self, settle_steps: int = 5) -> int:
        """Arm joints to the home configuration (velocities zeroed), the mocap target to the home
        hand position, then a few open-gripper steps of physics to settle. Returns steps used."""
        env = self._env
        d = env.data
        d.qpos[self._arm_qpos] = self._home_qpos
        d.qvel[self._arm_dof] = 0.0
        d.mocap_pos[0] = np.asarray(env.hand_init_pos, np.float64)
        mujoco.mj_forward(env.model, d)
        for _ in range(settle_steps):
            self._step_env(np.array([0.0, 0.0, 0.0, -1.0]))
        return settle_steps

    def success_of(self, phase: str) -> bool:
        """Ground-truth success of the forward or backward task in the current state
        (without switching)."""
        self._require_reset()
        if phase == self._phase:
            return self.ground_truth_success()
        env = self._envs[phase]
        self._copy_state(self._env, env)
        env._prev_obs = env._get_curr_obs_combined_no_goal()
        obs = np.clip(env._get_obs(), env.sawyer_observation_space.low, env.sawyer_observation_space.high)
        _, info = env.evaluate_state(obs, np.zeros(ACTION_DIM, dtype=np.float32))
        return bool(info["success"])


class SingleTaskWorld(_WorldBase):
    """One Meta-World task that resets per episode, rendered from a perturbed camera and
    lighting: prior data "from another institution".

    ``SingleTaskWorld(task, camera="corner4", image_size=(100, 100), seed=0, render=True,
    visual_seed=None, perturb=True, perturb_strength=1.0)``. The perturbation is drawn
    deterministically from ``visual_seed`` (default: ``seed``); ``perturb=False`` renders the
    stock scene. Each :meth:`reset` draws a new object placement from the seeded sampler.
    """

    def __init__(
        self,
        task: str,
        camera: str = DEFAULT_CAMERA,
        image_size=DEFAULT_IMAGE_SIZE,
        seed: int = 0,
        render: bool = True,
        visual_seed: Optional[int] = None,
        perturb: bool = True,
        perturb_strength: float = 1.0,
    ):
        super().__init__(camera, image_size, render, seed)
        self._task = _tasks.check_task(task)
        self._env = _make_env(task)
        self._env.seed(self.seed)
        self.perturbation = None
        if perturb:
            vs = self.seed if visual_seed is None else int(visual_seed)
            self.perturbation = VisualPerturbation.from_seed(vs, perturb_strength)
        self._prepare_models([self._env.model], self.perturbation)
        self._setup_renderer(self._env.model)
        self.episode_step = 0
        self._reset_done = False

    def reset(self) -> Obs:
        """New episode: new placement from the seeded sampler (deterministic per seed)."""
        self._env.reset()
        self.reset_count += 1
        self.episode_step = 0
        self._reset_done = True
        self._refresh()
        return self.observe()

    def step(self, action) -> Obs:
        if not self._reset_done:
            raise RuntimeError("call reset() before stepping a SingleTaskWorld")
        self.episode_step += 1
        return super().step(action)
