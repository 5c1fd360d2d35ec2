"""The learner facade: agent + offline/online replay + language table + normalisation + RND.

Offline:  L = Learner(LearnerConfig(...), proprio_dim, action_dim, image_shape=..., feature_dim=...)
          L.add_offline(load_episodes(path)); for _ in range(n): m = L.update()
Online:   L.add_episode(ep)   # when an episode closes: MC returns computed, goes to the online store
          m = L.update()      # batch mixed offline/online at agent config online_ratio (0.5)
          blob = L.export_policy()   # bytes for Policy.load_weights (push to the policy node)
Checkpoint: L.save(path); Learner.load(path) (bit-exact resume of networks, optimisers, RNGs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from robofume_ros.rl import checkpoint as ckpt
from robofume_ros.rl.bc import BC, BCConfig
from robofume_ros.rl.calql import CalQL, CalQLConfig
from robofume_ros.rl.common import ObsDims, denormals_flushed, to_torch
from robofume_ros.rl.cql import CQL, CQLConfig
from robofume_ros.rl.iql import IQL, IQLConfig
from robofume_ros.rl.language import LanguageTable
from robofume_ros.rl.networks import NetConfig
from robofume_ros.rl.replay import ReplayStore, RewardSpec, sample_mixed
from robofume_ros.rl.rnd import RND, RNDConfig
from robofume_ros.rl.sac import SAC, SACConfig

ALGOS = {
    "calql": (CalQL, CalQLConfig),
    "cql": (CQL, CQLConfig),
    "iql": (IQL, IQLConfig),
    "bc": (BC, BCConfig),
    "sac": (SAC, SACConfig),
}
KIND = "robofume_rl_learner"
# the option that limits behaviour cloning to episodes that succeeded (Cal-QL/CQL's actor BC term, BC itself)
BC_ONLY_SUCCESSFUL = {"calql": "bc_only_successful", "cql": "bc_only_successful", "bc": "only_successful"}


@dataclass
class LearnerConfig:
    algo: str = "calql"  # calql | cql | iql | bc | sac
    obs_mode: str = "state"  # state | features (frozen EfficientNet-lite0) | cnn (RoboFuME CNN)
    lang_mode: str = "minilm"  # minilm | onehot | none
    max_instructions: int = 16  # one-hot size (lang_mode onehot)
    failure_reward: float = -1.0  # raw reward of a non-success step (MC all-failure rule)
    n_step: int = 1  # TD horizon of the critic targets (1 = the official one-step backup;
    # n > 1 sums n rewards inside an episode before bootstrapping)
    use_rnd: bool = False  # add the OOO RND bonus to batch rewards (online exploration)
    rnd: dict = field(default_factory=dict)  # RNDConfig overrides
    seed: int = 0  # seeds numpy sampling and torch
    q_init: str = "mc_mean"  # fresh critics start at the offline data's mean MC return ("zero":
    # the official init; Q then spends ~gamma-horizon x target-lag steps
    # drifting from 0 to the return scale before it ranks actions)
    agent: dict = field(default_factory=dict)  # overrides of the algorithm config (net: NetConfig overrides)


def build_agent_config(cfg: LearnerConfig):
    cls = ALGOS[cfg.algo][1]
    over = dict(cfg.agent)
    net = NetConfig(**{**dict(over.pop("net", {})), "obs_mode": cfg.obs_mode})
    for k in ("hidden", "cnn_strides"):
        setattr(net, k, tuple(getattr(net, k)))
    return cls(net=net, **over)


class Learner:
    def __init__(
        self,
        cfg: LearnerConfig,
        proprio_dim: int,
        action_dim: int,
        image_shape: Optional[tuple] = None,
        feature_dim: Optional[int] = None,
        device="cpu",
    ):
        if cfg.algo not in ALGOS:
            raise ValueError(f"unknown algo {cfg.algo!r}; one of {list(ALGOS)}")
        if cfg.q_init not in ("mc_mean", "zero"):
            raise ValueError(f"q_init must be mc_mean or zero, got {cfg.q_init!r}")
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.lang = LanguageTable(cfg.lang_mode, cfg.max_instructions)
        # the task pair the policy is trained for (sim/tasks.TaskPair.as_dict(); None: not known), carried
        # in every checkpoint and weights message so evaluation and the main job can refuse another pair's
        self.task: Optional[dict] = None
        # what the policy expects to see (image shape, proprioception length, feature encoder): the
        # policy refuses observations that differ (rl/policy.Policy.check_observation)
        self.obs_spec: Optional[dict] = None
        self.agent_cfg = build_agent_config(cfg)
        ac = self.agent_cfg
        self.dims = ObsDims(
            proprio_dim,
            action_dim,
            self.lang.dim,
            feature_dim if cfg.obs_mode == "features" else None,
            tuple(image_shape) if (cfg.obs_mode == "cnn" and image_shape is not None) else None,
        )
        if cfg.obs_mode == "cnn" and self.dims.image_shape is None:
            raise ValueError("obs_mode 'cnn' needs image_shape")
        self.agent = ALGOS[cfg.algo][0](ac, self.dims, device)
        self.reward_spec = RewardSpec(ac.gamma, ac.reward_scale, ac.reward_bias, True, cfg.failure_reward, cfg.n_step)
        store_kw = dict(
            proprio_dim=proprio_dim,
            action_dim=action_dim,
            image_shape=self.dims.image_shape,
            feature_dim=self.dims.feature_dim,
            reward_spec=self.reward_spec,
            lang_index=self.lang.index,
        )
        self.offline = ReplayStore(**store_kw, capacity=4096)
        self.online = ReplayStore(**store_kw, capacity=4096)
        self.rnd = None
        if cfg.use_rnd:
            self.rnd = RND(self.agent.encoder.rnd_dim, RNDConfig(**cfg.rnd)).to(device)
        self.step = 0
        self._lang_t = None

    # -- data -------------------------------------------------------------------------------
    def add_offline(self, episodes, fit_stats: bool = True) -> None:
        """Offline episodes; fit_stats (a fresh learner): normalisation statistics from them and,
        before the first update, the critics' starting value (q_init)."""
        self.offline.add_episodes(episodes)
        if fit_stats:
            self.fit_obs_stats()
            if self.step == 0 and self.cfg.q_init == "mc_mean" and len(self.offline):
                self.agent.set_value_offset(float(self.offline.array("mc_returns").mean()))

    def set_agent_option(self, name: str, value) -> None:
        """Change one algorithm setting of a built learner (e.g. the actor's BC weight for online
        fine-tuning); recorded in the config so checkpoints and resumes keep it."""
        if not hasattr(self.agent.cfg, name) or name == "net":
            raise ValueError(f"{self.cfg.algo} has no option {name!r}")
        setattr(self.agent.cfg, name, value)
        self.cfg.agent = {**self.cfg.agent, name: value}

    def set_n_step(self, n: int) -> None:
        """TD horizon of the critic targets. Stored transitions hold their n-step pieces, so this is
        only allowed before any data is added (e.g. right after loading a checkpoint)."""
        if len(self.offline) or len(self.online):
            raise ValueError(
                "set_n_step: the replay already holds transitions built for n_step "
                f"{self.reward_spec.n_step}; set it before adding data"
            )
        if int(n) < 1:
            raise ValueError(f"n_step must be >= 1, got {n}")
        self.cfg.n_step = self.reward_spec.n_step = int(n)

    def set_bc_only_successful(self, on: bool = True) -> None:
        """Behaviour cloning only on episodes that succeeded (failed exploration is not imitated)."""
        if self.cfg.algo not in BC_ONLY_SUCCESSFUL:
            raise ValueError(f"{self.cfg.algo} has no behaviour-cloning term to restrict")
        self.set_agent_option(BC_ONLY_SUCCESSFUL[self.cfg.algo], on)

    def set_online_bc(self, include: bool = True) -> str:
        """Whether the actor's BC term (Cal-QL/CQL) sees the online attempts too (the default) or
        only the offline data (include False). Returns a line for the log ("" if default)."""
        if not include:
            self.set_agent_option("bc_online", False)
            return "actor BC term on offline data only"
        return ""

    def add_episode(self, ep) -> None:
        """Add one finished online episode (its MC returns are computed now; calibration stays on)."""
        self.online.add_episode(ep)

    def fit_obs_stats(self) -> None:
        """Normalisation statistics (mean/std of proprio and frozen features) from the offline store."""
        src = self.offline if len(self.offline) else self.online
        p = src.array("proprio")
        kw = dict(proprio_mean=torch.from_numpy(p.mean(0)), proprio_std=torch.from_numpy(p.std(0)))
        if self.dims.feature_dim:
            f = src.array("features")
            kw.update(feat_mean=torch.from_numpy(f.mean(0)), feat_std=torch.from_numpy(f.std(0)))
        self.agent.set_obs_stats(**kw)
        self.lang.fit_stats(np.bincount(src.array("lang"), minlength=len(self.lang.raw)))
        self._lang_t = None

    def _lang_table(self) -> torch.Tensor:
        if self._lang_t is None or len(self._lang_t) != len(self.lang.table):
            self._lang_t = torch.from_numpy(self.lang.table).to(self.device)
        return self._lang_t

    def sample_batch(self, batch_size: Optional[int] = None) -> dict:
        """Mixed offline/online batch as torch tensors, with language embeddings gathered."""
        bs = batch_size or self.agent_cfg.batch_size
        b = to_torch(sample_mixed(self.offline, self.online, bs, self.agent_cfg.online_ratio, self.rng), self.device)
        lang = self._lang_table()[b.pop("lang")]
        b["obs"]["lang"] = lang
        b["next_obs"]["lang"] = lang
        return b

    # -- training ---------------------------------------------------------------------------
    def update(self, n_steps: int = 1) -> dict:
        """n gradient steps; returns the last step's metrics (0-dim tensors, not synced)."""
        m = {}
        with denormals_flushed():  # fp32 matmuls over denormal gradients run 10x slower
            for _ in range(n_steps):
                m = self._update_once()
        return m

    def _update_once(self) -> dict:
        batch = self.sample_batch()
        if self.rnd is not None:
            x = self.agent.encoder.rnd_input(batch["next_obs"])
            bonus = self.rnd.bonus(x)  # of s' (with n_step > 1: added once to the n-step sum)
            batch["rewards"] = batch["rewards"] + bonus
            rm = self.rnd.update(x)
        m = self.agent.update(batch)
        if self.rnd is not None:
            m.update(rm, rnd_bonus=bonus.mean())
        self.step += 1
        return m

    def act(
        self, obs_np: dict, deterministic: bool = True, noise_scale: float = 1.0, eps: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Batch acting from numpy obs {proprio (B,P), image/features, instruction: list[str]};
        eps: the exploration noise (B, A) to use (rl/exploration.py), None draws it afresh."""
        obs = {k: torch.as_tensor(v) for k, v in obs_np.items() if k != "instruction"}
        obs["lang"] = torch.from_numpy(self.lang.embed(obs_np["instruction"]))
        return self.agent.act(
            obs, deterministic, noise_scale, None if eps is None else torch.as_tensor(eps, dtype=torch.float32)
        ).numpy()

    # -- weights for the policy node -------------------------------------------------------
    def policy_payload(self) -> dict:
        return {
            "kind": "robofume_rl_policy",
            "version": ckpt.VERSION,
            "step": self.step,
            "net": asdict(self.agent_cfg.net),
            "dims": asdict(self.dims),
            "obs_mode": self.cfg.obs_mode,
            "lang": self.lang.state_dict(),
            "policy": self.agent.policy_state_dict(),
            "task": self.task,
            "obs_spec": self.obs_spec,
        }

    def export_policy(self) -> bytes:
        """Actor + encoder weights + normalisation + instruction embeddings as bytes (PolicyWeights msg)."""
        return ckpt.encode(self.policy_payload())

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "kind": KIND,
            "version": ckpt.VERSION,
            "config": asdict(self.cfg),
            "agent_config": asdict(self.agent_cfg),
            "dims": asdict(self.dims),
            "step": self.step,
            "agent": self.agent.state_dict(),
            "lang": self.lang.state_dict(),
            "rnd": self.rnd.full_state_dict() if self.rnd is not None else None,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
            "policy": self.policy_payload(),
            "task": self.task,
            "obs_spec": self.obs_spec,
        }

    def save(self, path) -> None:
        ckpt.save_checkpoint(path, self.state_dict())

    @classmethod
    def load(
        cls, path, expect: Optional[LearnerConfig] = None, dims: Optional[dict] = None, device: str = "cpu"
    ) -> "Learner":
        """Rebuild a learner from a checkpoint, on `device`. `expect` / `dims`: raise CheckpointError
        when the checkpoint was made with a different algorithm/observation setup."""
        p = ckpt.load_checkpoint(path, kind=KIND)
        try:
            cfg = LearnerConfig(**p["config"])
            d = p["dims"]
        except (KeyError, TypeError) as e:
            raise ckpt.CheckpointError(f"{path}: config does not match this code ({e})") from e
        ckpt.check_feature_encoder(p.get("obs_spec"), str(path))
        if expect is not None:
            diff = [
                k
                for k in ("algo", "obs_mode", "lang_mode", "max_instructions")
                if getattr(expect, k) != getattr(cfg, k)
            ]
            if diff:
                raise ckpt.CheckpointError(
                    f"{path}: mismatched config: "
                    + ", ".join(
                        f"{k}={getattr(cfg, k)!r} in checkpoint vs {getattr(expect, k)!r} requested" for k in diff
                    )
                )
        if dims is not None:
            diff = [
                k
                for k, v in dims.items()
                if v is not None and d.get(k) is not None and tuple(np.atleast_1d(d[k])) != tuple(np.atleast_1d(v))
            ]
            if diff:
                raise ckpt.CheckpointError(
                    f"{path}: mismatched data dimensions: "
                    + ", ".join(f"{k}={d[k]} in checkpoint vs {dims[k]} in data" for k in diff)
                )
        L = cls(cfg, d["proprio_dim"], d["action_dim"], d["image_shape"], d["feature_dim"], device=device)
        try:
            L.load_state_dict(p)
        except (KeyError, RuntimeError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: weights do not fit the configured networks ({e})") from e
        return L

    def load_state_dict(self, p: dict) -> None:
        self.task = p.get("task")
        self.obs_spec = p.get("obs_spec")
        self.lang = LanguageTable.from_state_dict(p["lang"])
        for s in (self.offline, self.online):
            s.lang_index = self.lang.index
        self._lang_t = None
        self.agent.load_state_dict(p["agent"])
        if self.rnd is not None and p.get("rnd") is not None:
            self.rnd.load_full_state_dict(p["rnd"])
        self.step = p["step"]
        self.rng.bit_generator.state = p["rng"]["numpy"]
        torch.set_rng_state(p["rng"]["torch"])
