"""Inference-only policy for the policy node: encoder + actor, one observation at a time.

    pol = Policy.load("runs/x/checkpoint.pt")          # learner checkpoint or exported policy file
    a = pol.act(image, proprio, "open the drawer", deterministic=True)   # -> np.ndarray (A,)
    pol.load_weights(blob)                              # bytes from Learner.export_policy() or a dict

In obs_mode "features" the frozen EfficientNet-lite0 runs here on the single frame (features
for training were precomputed). Unseen instructions are embedded on first use and cached.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from robofume_ros.rl import checkpoint as ckpt
from robofume_ros.rl.language import LanguageTable
from robofume_ros.rl.networks import NetConfig, ObsEncoder, TanhGaussianActor

POLICY_KIND = "robofume_rl_policy"


def _policy_payload(p: dict, name: str) -> dict:
    if p.get("kind") == "robofume_rl_learner":
        p = p.get("policy")
    if not isinstance(p, dict) or p.get("kind") != POLICY_KIND:
        raise ckpt.CheckpointError(f"{name}: does not hold policy weights")
    return p


def checkpoint_pairs(payload: dict) -> list:
    """The task pairs a learner or policy payload was trained for: one, several (a multi-task
    policy for a fleet whose robots practise different pairs), or [] where it does not say."""
    task = payload.get("task")
    if task is None and isinstance(payload.get("policy"), dict):
        task = payload["policy"].get("task")
    if not isinstance(task, dict):
        return []
    if task.get("pairs"):
        return [t["name"] for t in task["pairs"]]
    return [task["name"]] if task.get("name") else []


def checkpoint_pair(payload: dict) -> Optional[str]:
    """The one task pair a payload was trained for (None where it does not say or holds several)."""
    pairs = checkpoint_pairs(payload)
    return pairs[0] if len(pairs) == 1 else None


class ObservationMismatch(ValueError):
    """An observation that is not what the policy was trained on (image size, proprioception)."""


def check_observation(spec: Optional[dict], image: Optional[np.ndarray], proprio) -> None:
    """Raise ObservationMismatch, naming the field, for an observation unlike the ones a policy was
    trained on (`spec`: a checkpoint's obs_spec; None checks only that proprioception is finite)."""
    p = np.asarray(proprio, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(p)):
        raise ObservationMismatch("proprioception holds NaN or Inf")
    if not spec:
        return
    if p.size != spec["proprio_dim"]:
        raise ObservationMismatch(
            f"proprioception has {p.size} values, the policy was trained on {spec['proprio_dim']}"
        )
    if image is not None and list(np.shape(image)) != list(spec["image_shape"]):
        raise ObservationMismatch(
            f"image is {'x'.join(map(str, np.shape(image)))}, the policy was trained on "
            f"{'x'.join(map(str, spec['image_shape']))} (set the camera's output size)"
        )


class Policy:
    def __init__(self, payload: dict, name: str = "<policy>"):
        p = _policy_payload(payload, name)
        net = dict(p["net"])
        for k in ("hidden", "cnn_strides"):
            net[k] = tuple(net[k])
        self.net_cfg = NetConfig(**net)
        d = p["dims"]
        self.dims = d
        self.obs_mode = p["obs_mode"]
        self.task = p.get("task")
        self.obs_spec = p.get("obs_spec")
        ckpt.check_feature_encoder(self.obs_spec, name)
        self.lang = LanguageTable.from_state_dict(p["lang"])
        self.encoder = ObsEncoder(
            self.net_cfg,
            d["proprio_dim"],
            d["lang_dim"],
            d["feature_dim"],
            tuple(d["image_shape"]) if d["image_shape"] else None,
        ).eval()
        self.actor = TanhGaussianActor(self.encoder.out_dim, d["action_dim"], self.net_cfg).eval()
        self._frozen = None
        self.step = -1
        self.load_weights(p, name)

    @classmethod
    def load(cls, path) -> "Policy":
        p = ckpt.load_checkpoint(path)
        return cls(p, str(path))

    def load_weights(self, weights: Union[bytes, dict], name: str = "<weights>") -> None:
        """New actor/encoder weights: bytes from Learner.export_policy(), a policy payload dict,
        or a flat state dict with 'encoder.*' / 'actor.*' keys."""
        if isinstance(weights, (bytes, bytearray, memoryview)):
            weights = ckpt.from_bytes(bytes(weights), name)
        if "kind" in weights:
            p = _policy_payload(weights, name)
            sd, self.step = p["policy"], p.get("step", -1)
            for s in p["lang"]["instructions"]:  # keep embeddings of instructions the learner added
                if s not in self.lang.ids:
                    self.lang = LanguageTable.from_state_dict(p["lang"])
                    break
        else:
            sd = weights
        try:
            self.encoder.load_state_dict({k[8:]: v for k, v in sd.items() if k.startswith("encoder.")})
            self.actor.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("actor.")})
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"{name}: weights do not fit this policy ({e})") from e

    @property
    def feature_encoder_id(self) -> Optional[str]:
        """The id of the frozen image features this policy acts on (None: it reads images itself)."""
        if self.obs_mode != "features":
            return None
        from robofume_ros.vision import FEATURE_ENCODER_ID

        return (self.obs_spec or {}).get("feature_encoder") or FEATURE_ENCODER_ID

    @torch.no_grad()
    def prepare(self) -> "Policy":
        """Load what act() would otherwise load on its first frame (the frozen image encoder of a
        features policy) and run it once on a blank frame: a node calls this when it configures,
        so its first command does not wait seconds for a model to load."""
        if self.obs_mode == "features" and self._frozen is None:
            from robofume_ros.vision.encoder import FrozenImageEncoder

            self._frozen = FrozenImageEncoder()
            shape = (self.obs_spec or {}).get("image_shape") or [100, 100, 3]
            self._frozen(np.zeros(shape, np.uint8))
        return self

    @torch.no_grad()
    def act(
        self,
        image: Optional[np.ndarray],
        proprio: np.ndarray,
        instruction: str,
        deterministic: bool = True,
        features: Optional[np.ndarray] = None,
        noise_scale: float = 1.0,
        eps: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """One observation -> one action (A,) float32 in [-1, 1]; when stochastic, the actor's std is
        scaled by noise_scale (1: its own distribution, 0: deterministic) and eps (A,), if given, is
        the standard-normal noise (rl/exploration.py: white or temporally correlated).
        Raises ObservationMismatch for an observation unlike the ones it was trained on."""
        check_observation(self.obs_spec, image, proprio)
        obs = {
            "proprio": torch.as_tensor(np.asarray(proprio, np.float32)).view(1, -1),
            "lang": torch.from_numpy(self.lang.embed([instruction])),
        }
        if self.obs_mode == "cnn":
            obs["image"] = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)
        elif self.obs_mode == "features":
            if features is None:
                features = self.prepare()._frozen(image)
            obs["features"] = torch.as_tensor(np.asarray(features, np.float32)).view(1, -1)
        mean, log_std = self.actor(self.encoder(obs))
        a = self.actor.explore(
            mean,
            log_std,
            0.0 if deterministic else noise_scale,
            None if eps is None else torch.as_tensor(eps, dtype=torch.float32),
        )
        return a[0].numpy().astype(np.float32)
