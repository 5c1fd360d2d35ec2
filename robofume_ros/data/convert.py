"""Bags -> episode dataset.

    robofume dataset from-bags BAGS... -o DIR [--source online] [--labels auto|demo|phase|reward-topic|model|none]

Recorder bags (robofume_ros/msg/Observation on /observation + ArmCommand on /robot/command):
  * actions pair with observations by EQUAL header stamp; for foreign bags, by the nearest
    following command within half a control period (each command answers one frame: the latest
    frame before it);
  * one episode per episode_index (and task); episode k ends on its own last observation when that
    one has no command (the arm went home before k+1), else on the first observation of k+1 when
    they are consecutive (the boundary observation is shared);
  * episodes are cut where the stream has a gap longer than gap_factor control periods;
  * success: the TaskPhase that starts episode k+1 says REASON_SUCCESS; without one, the last
    recorded /reward of the episode; without that, --assume-success (default: demos succeed).
Foreign bags (--image-topic with sensor_msgs/msg/Image + a command topic of ArmCommand, Twist,
TwistStamped, Float32/64MultiArray or JointState): one episode per bag, cut at gaps; task and
instruction from arguments.

Labels (r_t in {-1, 0}: 0 iff the task is done at o_{t+1}; terminal_t iff the episode ended by
success at o_{t+1}):
  demo          RoboFuME: last k (3) transitions of a successful episode 0 and terminal, else -1
  phase         only the last transition of a successful episode is 0/terminal
  reward-topic  r_t = 0 iff the recorded Reward for o_{t+1} says success; terminal at a successful end
  model         r_t = 0 iff reward_fn(images, instruction)[t+1] >= threshold (relabel hook)
  none          all -1, no terminals
  auto          demo for prior/target_demo/failure sources, else reward-topic if recorded, else phase
Everything dropped is counted by reason in the report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import struct
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from . import bags as B
from .dataset import DatasetWriter, FrameList
from .episode import SOURCES, Episode
from .images import buffer_to_rgb, resize_rgb
from ..interfaces import bag_namespace, command_to_action, resolve_name

RewardFn = Callable[[np.ndarray, str], np.ndarray]  # images (N,H,W,3) uint8, instruction -> P(done) (N,)
LABELS = ("auto", "demo", "phase", "reward-topic", "model", "none")
COMMAND_TYPES = (
    "robofume_ros/msg/ArmCommand",
    "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/TwistStamped",
    "std_msgs/msg/Float32MultiArray",
    "std_msgs/msg/Float64MultiArray",
    "sensor_msgs/msg/JointState",
)


TOPIC_FIELDS = (
    "observation_topic",
    "image_topic",
    "command_topic",
    "executed_topic",
    "reward_topic",
    "phase_topic",
    "ground_truth_topic",
    "proprio_topic",
)


@dataclass
class ConvertConfig:
    observation_topic: str = B.TOPICS["observation"]
    image_topic: Optional[str] = None  # foreign mode: sensor_msgs/msg/Image topic
    command_topic: str = B.TOPICS["command"]
    executed_topic: str = B.TOPICS["executed"]  # what the arm did while a person drove (wins)
    reward_topic: str = B.TOPICS["reward"]
    phase_topic: str = B.TOPICS["task_phase"]
    ground_truth_topic: str = B.TOPICS["ground_truth"]
    proprio_topic: Optional[str] = None  # foreign mode: RobotState / JointState / *MultiArray
    # relative topic names resolve in the namespace the recording's graph ran under: None = the
    # one its observations name (/observation -> '', /robot1/observation -> /robot1)
    namespace: Optional[str] = None
    action_dim: int = 4
    labels: str = "auto"
    k: int = 3
    source: str = "online"
    task: str = ""  # foreign mode (or override)
    instruction: str = ""
    assume_success: Optional[bool] = None  # None: True for prior/target_demo, else False
    gap_factor: float = 1.5
    min_length: int = 1
    image_size: Optional[tuple] = None  # (H, W) nearest-neighbour resize
    reward_fn: Optional[RewardFn] = None
    reward_threshold: float = 0.5
    recover: bool = False
    keep_going: bool = False  # on a broken bag: record the error, go on
    progress: bool = True
    fsync: bool = False  # fsync every file (slow); else one sync at the end
    sync: bool = True  # syncfs the dataset once at the end

    def __post_init__(self):
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {self.labels!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.labels == "model" and self.reward_fn is None:
            raise ValueError("labels='model' needs reward_fn (images, instruction -> probabilities)")
        if self.action_dim not in (4, 7):
            raise ValueError("action_dim must be 4 or 7")


@dataclass
class ConvertReport:
    bags: list = field(default_factory=list)
    episodes: int = 0
    transitions: int = 0
    successes: int = 0
    observations: int = 0
    commands: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count (observations/commands/transitions)
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # damage read past (--recover): what was skipped

    def as_dict(self):
        return {
            "bags": self.bags,
            "episodes": self.episodes,
            "transitions": self.transitions,
            "successes": self.successes,
            "observations": self.observations,
            "commands": self.commands,
            "dropped": dict(self.dropped),
            "errors": self.errors,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        lines = [
            f"converted {len(self.bags)} bag(s): {self.episodes} episodes, {self.transitions} "
            f"transitions, {self.successes} successful; {self.observations} observations, "
            f"{self.commands} commands read"
        ]
        if self.dropped:
            lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())))
        for w in self.warnings:
            lines.append(f"WARNING {w}")
        for e in self.errors:
            lines.append(f"ERROR {e}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# message -> numpy
# --------------------------------------------------------------------------------------------


def _stamp(msg, fallback: int) -> int:
    h = getattr(msg, "header", None)
    if h is not None:
        s = B.stamp_ns(h.stamp)
        if s:
            return s
    return fallback


def command_vector(msg, msgtype: str, action_dim: int) -> np.ndarray:
    if msgtype == "robofume_ros/msg/ArmCommand":
        return command_to_action(msg, action_dim).astype(np.float32)
    if msgtype in ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"):
        tw = msg.twist if msgtype.endswith("Stamped") else msg
        l, a = tw.linear, tw.angular
        v = [l.x, l.y, l.z, 0.0] if action_dim == 4 else [l.x, l.y, l.z, a.x, a.y, a.z, 0.0]
        return np.array(v, np.float32)
    if msgtype.startswith("std_msgs/msg/Float") or msgtype == "sensor_msgs/msg/JointState":
        d = np.asarray(msg.position if msgtype.endswith("JointState") else msg.data, np.float32)
        if len(d) != action_dim:
            raise ValueError(f"command vector has {len(d)} entries, action_dim is {action_dim}")
        return d
    raise B.UnknownMessageTypeError(f"cannot turn {msgtype} into an action; command types: {COMMAND_TYPES}")


def proprio_vector(msg, msgtype: str) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/JointState":
        return np.asarray(msg.position, np.float32)
    if hasattr(msg, "proprio"):
        return np.asarray(msg.proprio, np.float32)
    if hasattr(msg, "data"):
        return np.asarray(msg.data, np.float32)
    raise B.UnknownMessageTypeError(f"cannot read proprioception from {msgtype}")


# --------------------------------------------------------------------------------------------
# one bag
# --------------------------------------------------------------------------------------------


@dataclass
class _Obs:
    stamp: int
    image: np.ndarray
    proprio: np.ndarray
    instruction: str
    task: str
    phase: int
    episode_index: int
    action: Optional[np.ndarray] = None
    intervention: bool = False


def _read_bag(path, cfg: ConvertConfig, rep: ConvertReport):
    """One pass over a bag: observations, commands, rewards, phases, ground truth."""
    reader = B.BagReader([path], recover=cfg.recover)
    with reader:
        topics = reader.topics()
        ns = bag_namespace(topics) if cfg.namespace is None else cfg.namespace
        cfg = replace(
            cfg,
            **{
                f: resolve_name(getattr(cfg, f), ns)
                for f in TOPIC_FIELDS
                if getattr(cfg, f) is not None and (f != "observation_topic" or cfg.image_topic is None)
            },
        )
        foreign = cfg.image_topic is not None
        obs_topic = cfg.image_topic if foreign else cfg.observation_topic
        if obs_topic not in topics:
            hint = "" if foreign else " (for a bag without robofume Observations pass --image-topic)"
            reader.require([obs_topic], hint)
        # a person's demonstrations with no policy running: what the arm executed is every action
        by_hand = not foreign and cfg.command_topic not in topics and bool(cfg.executed_topic in topics)
        if not by_hand:
            reader.require([cfg.command_topic], " (set --command-topic)")
        want_obs_type = "sensor_msgs/msg/Image" if foreign else B.MSGTYPES["observation"]
        if topics[obs_topic] != want_obs_type:
            raise B.BagError(f"{obs_topic} in {path} carries {topics[obs_topic]}, expected {want_obs_type}")
        if not by_hand and topics[cfg.command_topic] not in COMMAND_TYPES:
            raise B.UnknownMessageTypeError(
                f"{cfg.command_topic} in {path} carries {topics[cfg.command_topic]}; "
                f"supported command types: {COMMAND_TYPES}"
            )
        wanted = {obs_topic: "obs"} if by_hand else {obs_topic: "obs", cfg.command_topic: "cmd"}
        for t, role in (
            (cfg.executed_topic, "executed"),
            (cfg.reward_topic, "reward"),
            (cfg.phase_topic, "phase"),
            (cfg.ground_truth_topic, "gt"),
            (cfg.proprio_topic, "proprio"),
        ):
            if t and t in topics:
                wanted[t] = role
        for t in wanted:
            reader.check_type(topics[t])
        counts = reader.message_counts()
        total = sum(counts.get(t, 0) for t in wanted)
        obs, cmds, rewards, phases, gt, proprio = [], [], defaultdict(list), {}, {}, []
        outcomes: dict = {}  # episode index -> (stamp of the phase message that said it, success)
        store = reader.store
        pbar = _pbar(total, f"read {Path(path).name}", cfg.progress)
        # parsers generated from msg/ read this package's layouts only, not a bag's older ones
        fast = {B.MSGTYPES["observation"], B.MSGTYPES["command"], B.MSGTYPES["reward"]} - reader.redefined
        n_done = 0
        for topic, msgtype, data, mstamp in reader.raw_tuples(list(wanted)):
            role = wanted[topic]
            n_done += 1
            if n_done % 256 == 0:
                pbar.update(256)
            if msgtype in fast:  # parsers generated from msg/ (bags/cdr.py): ~3x faster than generic
                try:
                    if role == "obs" and not foreign:
                        (st, img, h, w, step, enc, pr, instr, task, ph, ep) = B.parse_observation(data)
                        img = buffer_to_rgb(h, w, enc, step, img)
                        if cfg.image_size:
                            img = resize_rgb(img, cfg.image_size)
                        obs.append(_Obs(st or mstamp, img, pr, instr, task, ph, ep))
                        continue
                    if role in ("cmd", "executed"):
                        st, a, iv = B.parse_command(data, cfg.action_dim)
                        cmds.append((st or mstamp, a, iv or role == "executed"))
                        continue
                    if role == "reward":
                        st, prob, ok, ep = B.parse_reward(data)
                        rewards[st or mstamp].append((ep, ok, prob))
                        continue
                except ValueError as err:
                    if "image" in str(err) or "encoding" in str(err):
                        rep.dropped[f"bad_image ({err})"] += 1
                        continue
                except (IndexError, struct.error, UnicodeDecodeError):
                    pass  # fall back to the generic deserializer for a clear error
            m = SimpleNamespace(topic=topic, msgtype=msgtype, stamp=mstamp)
            try:
                msg = store.deserialize_cdr(bytes(data), msgtype)
            except Exception as err:
                raise B.BagCorruptError(
                    f"cannot deserialize {msgtype} on {topic} in {path} at t={mstamp}: {err}"
                ) from err
            if role == "obs":
                try:
                    if foreign:
                        img = buffer_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
                        o = _Obs(_stamp(msg, m.stamp), img, np.zeros(0, np.float32), cfg.instruction, cfg.task, 0, 0)
                    else:
                        im = msg.image
                        img = buffer_to_rgb(im.height, im.width, im.encoding, im.step, im.data)
                        o = _Obs(
                            B.stamp_ns(msg.header.stamp) or m.stamp,
                            img,
                            np.asarray(msg.proprio, np.float32),
                            msg.instruction,
                            msg.task,
                            int(msg.phase),
                            int(msg.episode_index),
                        )
                except ValueError as err:
                    rep.dropped[f"bad_image ({err})"] += 1
                    continue
                if cfg.image_size:
                    o.image = resize_rgb(o.image, cfg.image_size)
                obs.append(o)
            elif role in ("cmd", "executed"):
                try:
                    a = command_vector(msg, m.msgtype, cfg.action_dim)
                except ValueError as err:
                    rep.dropped[f"bad_command ({err})"] += 1
                    continue
                iv = bool(getattr(msg, "intervention", False)) or role == "executed"
                cmds.append((_stamp(msg, m.stamp), a, iv))
            elif role == "reward":
                rewards[_stamp(msg, m.stamp)].append(
                    (int(msg.episode_index), bool(msg.success), float(msg.probability))
                )
            elif role == "phase":
                phases.setdefault(int(msg.episode_index), msg)
                # the switcher's remembered verdicts, with a person's later overrides (newest wins)
                t = _stamp(msg, m.stamp)
                for i, ok in zip(getattr(msg, "recent_episodes", ()), getattr(msg, "recent_successes", ())):
                    if int(i) not in outcomes or outcomes[int(i)][0] <= t:
                        outcomes[int(i)] = (t, bool(ok))
            elif role == "gt":
                gt[(_stamp(msg, m.stamp), msg.task)] = bool(msg.success)
            elif role == "proprio":
                proprio.append((_stamp(msg, m.stamp), proprio_vector(msg, m.msgtype)))
        pbar.update(n_done % 256)
        pbar.close()
        rep.warnings += reader.warnings
    return obs, cmds, rewards, phases, gt, proprio, foreign, outcomes


def _pbar(total, desc, enable):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="msg", disable=not enable, leave=False)
    except ImportError:  # pragma: no cover

        class _N:
            def update(self, n):
                pass

            def close(self):
                pass

        return _N()


def _median_period(stamps) -> int:
    s = np.asarray(stamps, np.int64)
    if len(s) < 2:
        return 0
    d = np.diff(np.sort(s))
    d = d[d > 0]
    return int(np.median(d)) if len(d) else 0


def pair_commands(obs: list, cmds: list, rep: ConvertReport, exact_only: bool = False) -> int:
    """Attach commands to observations: equal stamps first, where what the arm executed while a
    person drove (intervention) wins over the policy's command; then each remaining command answers
    the latest unanswered frame at most half a control period before it. Drops unmatched frames
    and commands (counted in rep.dropped). Returns the control period (ns)."""
    period = _median_period([c[0] for c in cmds]) or _median_period([o.stamp for o in obs])
    half = period // 2
    by_stamp = {}
    for o in obs:
        by_stamp[o.stamp] = o
    leftover = []
    for st, a, iv in cmds:
        o = by_stamp.get(st)
        if o is not None and (o.action is None or (iv and not o.intervention)):
            o.action, o.intervention = a, iv
        elif o is not None:
            if not (o.intervention and not iv):  # the policy's command a person's replaced is no duplicate
                rep.dropped["duplicate_command"] += 1
        else:
            leftover.append((st, a, iv))
    if leftover and not exact_only:
        stamps = np.array([o.stamp for o in obs], np.int64)
        for st, a, iv in leftover:
            j = int(np.searchsorted(stamps, st, side="right")) - 1  # latest frame at or before st
            if j >= 0 and st - stamps[j] <= half and obs[j].action is None:
                obs[j].action, obs[j].intervention = a, iv
            else:
                rep.dropped["command_without_observation"] += 1
    elif leftover:
        rep.dropped["command_without_observation"] += len(leftover)
    return period


def _segments(seq: list, gap: int):
    """Split a list of _Obs (all but possibly the last have actions) at time gaps > gap.
    Yields lists where every obs but the last has an action."""
    cur = []
    for o in seq:
        if cur and gap and o.stamp - cur[-1].stamp > gap:
            yield cur, "gap"
            cur = []
        cur.append(o)
    if cur:
        yield cur, None


def _label(T: int, success: bool, mode: str, k: int, done_next=None):
    r = -np.ones(T, np.float32)
    term = np.zeros(T, bool)
    if mode == "demo":
        if success:
            r[max(0, T - k) :] = 0
            term[max(0, T - k) :] = True
    elif mode in ("phase", "reward-topic", "model"):
        if done_next is not None:
            r[np.asarray(done_next, bool)] = 0
        if success and T:
            r[-1] = 0
            term[-1] = True
    return r, term


def convert_bag(path, cfg: ConvertConfig, rep: ConvertReport) -> list[Episode]:
    """All episodes of one bag (fresh arrays)."""
    return list(iter_bag_episodes(path, cfg, rep))


def _stack(frames, buffer):
    """Stack frames; with a buffer dict, into a reused array (no fresh pages to fault in)."""
    if buffer is None:
        return np.stack(frames)
    shape = (len(frames),) + frames[0].shape
    buf = buffer.get("images")
    if buf is None or buf.shape[1:] != shape[1:] or len(buf) < shape[0]:
        buf = buffer["images"] = np.empty(
            (max(shape[0], 2 * len(buf) if buf is not None and buf.shape[1:] == shape[1:] else shape[0]),) + shape[1:],
            np.uint8,
        )
    out = buf[: shape[0]]
    for i, f in enumerate(frames):
        out[i] = f
    return out


def iter_bag_episodes(path, cfg: ConvertConfig, rep: ConvertReport, buffer: Optional[dict] = None):
    """Yield the episodes of one bag. With `buffer` (a dict), images live in a reused array:
    each episode must be consumed (written) before the next one is taken."""
    for ep, _ in _iter_bag_episodes(path, cfg, rep, buffer, lazy_images=False):
        yield ep


def _iter_bag_episodes(
    path, cfg: ConvertConfig, rep: ConvertReport, buffer: Optional[dict] = None, lazy_images: bool = False
):
    """(episode, frames): with lazy_images, episode.images is a zero-stride placeholder and
    `frames` (a FrameList of views into the bag) is what DatasetWriter.append(ep, frames) writes."""
    obs, cmds, rewards, phases, gt, proprio, foreign, outcomes = _read_bag(path, cfg, rep)
    rep.observations += len(obs)
    rep.commands += len(cmds)
    if not obs:
        rep.dropped["empty_bag"] += 1
        return []
    # order and de-duplicate observations by stamp
    obs.sort(key=lambda o: o.stamp)
    uniq = [obs[0]]
    for o in obs[1:]:
        if o.stamp == uniq[-1].stamp:
            rep.dropped["duplicate_observation"] += 1
        else:
            uniq.append(o)
    obs = uniq
    cmds.sort(key=lambda c: c[0])
    if proprio:
        ps = np.array([p[0] for p in proprio], np.int64)
        for o in obs:
            j = int(np.searchsorted(ps, o.stamp, side="right")) - 1
            o.proprio = proprio[j][1] if j >= 0 else np.zeros_like(proprio[0][1])
    obs_period = _median_period([o.stamp for o in obs])
    period = pair_commands(obs, cmds, rep)
    if foreign:
        period = period or obs_period
    else:
        period = obs_period or period
    gap = int(cfg.gap_factor * period) if period else 0

    # group into episodes: consecutive runs of (episode_index, task)
    groups = []
    for o in obs:
        key = (o.episode_index, o.task)
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append(o)

    labels = cfg.labels
    if labels == "auto":
        if cfg.source in ("prior", "target_demo", "failure"):
            labels = "demo"
        elif rewards:
            labels = "reward-topic"
        else:
            labels = "phase"
    if labels == "reward-topic" and not rewards:
        raise B.MissingTopicError(f"labels='reward-topic' but {cfg.reward_topic} is not in {path}")
    assume = cfg.assume_success
    if assume is None:
        assume = cfg.source in ("prior", "target_demo")

    for gi, ((ep_idx, task), members) in enumerate(groups):
        # frames without a command are not transitions (foreign: extra frames)
        kept = [o for o in members if o.action is not None]
        n_nocmd = len(members) - len(kept)
        # final observation: the next episode's first frame if consecutive, else our last frame
        # unless the episode's own last frame has no command: then it closes the chain itself (the
        # arm went home before the next episode, so the next first frame is not our successor)
        nxt = groups[gi + 1][1][0] if gi + 1 < len(groups) else None
        if members[-1].action is None and len(members) > 1:
            final = members[-1]
            n_nocmd -= 1
        elif nxt is not None and (not gap or nxt.stamp - members[-1].stamp <= gap):
            final = nxt
        else:
            final = members[-1]
            if final.action is not None:
                kept = kept[:-1]
                rep.dropped["no_next_observation"] += 1
            else:
                n_nocmd -= 1
        if n_nocmd:
            rep.dropped["observation_without_command"] += n_nocmd
        seq = kept + [final]
        # success of this episode
        ph = phases.get(ep_idx + 1)
        if ep_idx in outcomes and not foreign:
            success = outcomes[ep_idx][1]  # the switcher's final verdict (a person's override included)
            how = "task_phase"
        elif ph is not None and not foreign:
            success = int(ph.last_switch_reason) == B.REASON_SUCCESS
            how = "task_phase"
        elif rewards and not foreign and final is not None and _reward_at(rewards, final.stamp, ep_idx) is not None:
            success = bool(_reward_at(rewards, final.stamp, ep_idx)[1])
            how = "reward_topic"
        else:
            success = bool(assume)
            how = "assumed"
        if cfg.source == "failure":  # failure data is labelled unsuccessful by definition
            success, how = False, "failure_source"
        segs = list(_segments(seq, gap))
        for si, (seg, cut) in enumerate(segs):
            is_end = si == len(segs) - 1
            if cut == "gap":
                rep.dropped["gap"] += 1  # the action of the last frame before a gap
            T = len(seg) - 1
            if T < cfg.min_length:
                rep.dropped["too_short"] += max(T, 0)
                continue
            ep_success = success and is_end
            instruction = cfg.instruction or seg[0].instruction
            task_name = cfg.task or task or "unknown"
            frames = None
            if lazy_images and labels != "model":
                frames = FrameList([o.image for o in seg])
                images = frames.placeholder()
            else:
                images = _stack([o.image for o in seg], buffer)
            done_next = None
            if labels == "reward-topic":
                done_next = [bool((_reward_at(rewards, o.stamp, ep_idx) or (0, False, 0.0))[1]) for o in seg[1:]]
            elif labels == "model":
                p = np.asarray(cfg.reward_fn(images, instruction), np.float32).reshape(-1)
                if len(p) != len(images):
                    raise ValueError(f"reward_fn returned {len(p)} probabilities for {len(images)} images")
                done_next = p[1:] >= cfg.reward_threshold
                if how == "assumed" and is_end:
                    ep_success = bool(p[-1] >= cfg.reward_threshold)
            rew, term = _label(T, ep_success, labels, cfg.k, done_next)
            props = [o.proprio for o in seg]
            pdim = {len(p) for p in props}
            proprio_arr = np.stack(props).astype(np.float32) if len(pdim) == 1 else np.zeros((T + 1, 0), np.float32)
            if len(pdim) != 1:
                rep.dropped["inconsistent_proprio_dims"] += 1
            sgt = None
            if gt:
                sgt = np.array([gt.get((o.stamp, task), gt.get((o.stamp, o.task), False)) for o in seg], bool)
            yield (
                Episode(
                    images=images,
                    proprio=proprio_arr,
                    actions=np.stack([o.action for o in seg[:-1]]).astype(np.float32),
                    rewards=rew,
                    terminals=term,
                    instruction=instruction,
                    task=task_name,
                    source=cfg.source,
                    success=bool(ep_success),
                    success_gt=sgt,
                    provenance={
                        "bag": str(path),
                        "t_start_ns": int(seg[0].stamp),
                        "t_end_ns": int(seg[-1].stamp),
                        "episode_index": int(ep_idx),
                        "segment": si,
                        "segments": len(segs),
                        "labels": labels,
                        "success_from": how,
                        "interventions": int(sum(o.intervention for o in seg[:-1])),
                        "phase": int(seg[0].phase),
                    },
                ),
                frames,
            )


def _reward_at(rewards, stamp, ep_idx):
    lst = rewards.get(stamp)
    if not lst:
        return None
    for r in lst:
        if r[0] == ep_idx:
            return r
    return lst[0]


def convert_bags(bags, out, cfg: Optional[ConvertConfig] = None, **kw) -> ConvertReport:
    """Convert bags (in the given order) into the dataset at `out` (created or appended to).
    Episodes of each bag are written as soon as that bag is converted, so an error in a later bag
    keeps everything converted before it; with keep_going the error is recorded and skipped."""
    cfg = cfg or ConvertConfig(**kw)
    rep = ConvertReport()
    # per-file fsync costs more than the conversion itself; atomic renames keep every episode
    # whole against a crash of this process, and the data is synced to disk once at the end
    writer = DatasetWriter(out, fsync=cfg.fsync)
    buffer: dict = {}
    for path in bags:
        try:
            for ep, frames in _iter_bag_episodes(path, cfg, rep, buffer, lazy_images=True):
                writer.append(ep, frames)
                rep.episodes += 1
                rep.transitions += len(ep)
                rep.successes += int(ep.success)
        except (B.BagError, ValueError) as err:
            if not cfg.keep_going:
                err.args = (f"{err} [{rep.episodes} episodes converted so far are in {out}]",)
                raise
            rep.errors.append(f"{path}: {err}")
            continue
        rep.bags.append(str(path))
    if cfg.sync:
        writer.sync()
    return rep


def _load_callable(spec: str):
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--reward-model must be module:function, got {spec!r}")
    return getattr(importlib.import_module(mod), attr)


def build_parser(prog="robofume dataset from-bags"):
    p = argparse.ArgumentParser(prog=prog, description="Convert rosbag2 bags into an episode dataset.")
    p.add_argument("bags", nargs="+", help="bag directories or .mcap/.db3 files")
    p.add_argument("-o", "--out", required=True, help="dataset directory (created or appended)")
    d = ConvertConfig.__dataclass_fields__
    p.add_argument("--observation-topic", default=d["observation_topic"].default)
    p.add_argument("--image-topic", default=None, help="foreign bags: sensor_msgs/msg/Image topic")
    p.add_argument("--command-topic", default=d["command_topic"].default)
    p.add_argument("--reward-topic", default=d["reward_topic"].default)
    p.add_argument("--phase-topic", default=d["phase_topic"].default)
    p.add_argument("--ground-truth-topic", default=d["ground_truth_topic"].default)
    p.add_argument("--proprio-topic", default=None)
    p.add_argument(
        "--namespace",
        default=None,
        help="namespace the recorded graph ran under, for the relative topic names (default: the one "
        "the bag's observations name, e.g. /robot1 for /robot1/observation)",
    )
    p.add_argument("--action-dim", type=int, default=4, choices=(4, 7))
    p.add_argument("--labels", default="auto", choices=LABELS)
    p.add_argument("-k", type=int, default=3, help="positive frames at the end of a successful demo")
    p.add_argument("--source", default="online", choices=SOURCES)
    p.add_argument("--task", default="")
    p.add_argument("--instruction", default="")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--assume-success", dest="assume_success", action="store_true", default=None)
    g.add_argument("--assume-failure", dest="assume_success", action="store_false")
    p.add_argument("--gap-factor", type=float, default=1.5)
    p.add_argument("--min-length", type=int, default=1)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--reward-model", help="module:function, images (N,H,W,3) uint8, instruction -> P(done)")
    p.add_argument("--reward-threshold", type=float, default=0.5)
    p.add_argument("--recover", action="store_true", help="repair bags left by a killed recorder first")
    p.add_argument("--keep-going", action="store_true", help="skip broken bags instead of stopping")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report", help="write the conversion report as JSON here")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    cfg = ConvertConfig(
        observation_topic=a.observation_topic,
        image_topic=a.image_topic,
        command_topic=a.command_topic,
        reward_topic=a.reward_topic,
        phase_topic=a.phase_topic,
        ground_truth_topic=a.ground_truth_topic,
        namespace=a.namespace,
        proprio_topic=a.proprio_topic,
        action_dim=a.action_dim,
        labels="model" if a.reward_model and a.labels == "auto" else a.labels,
        k=a.k,
        source=a.source,
        task=a.task,
        instruction=a.instruction,
        assume_success=a.assume_success,
        gap_factor=a.gap_factor,
        min_length=a.min_length,
        image_size=tuple(a.image_size) if a.image_size else None,
        reward_fn=_load_callable(a.reward_model) if a.reward_model else None,
        reward_threshold=a.reward_threshold,
        recover=a.recover,
        keep_going=a.keep_going,
        progress=not a.no_progress,
    )
    try:
        rep = convert_bags(a.bags, a.out, cfg)
    except (B.BagError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(rep.summary())
    if a.report:
        Path(a.report).write_text(json.dumps(rep.as_dict(), indent=1))
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
