"""Generative VLM yes/no reward model (RoboFuME's recipe, with a ``transformers`` VLM).

P(success) = P("yes") / (P("yes") + P("no")) from the next-token distribution after
"Is the task '<instruction>' done? Answer yes or no." and the image; yes/no are each the set of
first tokens of " yes", "yes", " Yes", "Yes" (resp. no). Loaded with
``AutoModelForImageTextToText`` + ``AutoProcessor`` (Idefics3/SmolVLM, LLaVA, PaliGemma, ...);
fine-tuned with a peft LoRA adapter on the language model's attention projections, trained with
binary cross-entropy on that yes-vs-no logit.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import (
    CorruptCheckpointError,
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

DEFAULT_QUESTION = "Is the task '{instruction}' done? Answer yes or no."
YES = (" yes", "yes", " Yes", "Yes")
NO = (" no", "no", " No", "No")
NESTED_IMAGE_TYPES = ("idefics3", "smolvlm", "idefics2", "idefics")


def _first_tokens(tokenizer, words):
    ids = []
    for w in words:
        t = tokenizer.encode(w, add_special_tokens=False)
        if t and t[0] not in ids:
            ids.append(t[0])
    return ids


class VLMRewardModel(RewardModel):
    model_type = "vlm_yes_no"

    def __init__(
        self,
        model,
        processor,
        source: str,
        question: str = DEFAULT_QUESTION,
        threshold: float = 0.5,
        model_id: str = "",
        num_threads: int | None = 1,
        precision: str = "auto",
        lora: dict | None = None,
        use_chat_template: bool | None = None,
        image_size: int | None = None,
    ):
        super().__init__(
            threshold=threshold, model_id=model_id or f"vlm:{source}", num_threads=num_threads, precision=precision
        )
        self.model, self.processor, self.source = model, processor, str(source)
        self.question = question
        self.lora = lora
        self.image_size = image_size
        self.tokenizer = getattr(processor, "tokenizer", processor)
        tmpl = getattr(processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        self.use_chat_template = bool(tmpl) if use_chat_template is None else use_chat_template
        self.yes_ids = _first_tokens(self.tokenizer, YES)
        self.no_ids = _first_tokens(self.tokenizer, NO)
        if not self.yes_ids or not self.no_ids or set(self.yes_ids) & set(self.no_ids):
            raise WrongModelTypeError(f"{source}: the tokenizer cannot tell 'yes' from 'no' tokens")
        self.model_kind = getattr(getattr(model, "config", None), "model_type", "")
        self.model.eval()

    # ------------------------------------------------------------------ construction
    @staticmethod
    def load_base(source: str):
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        src = check_model_source(source)
        with hub_errors(src):
            cfg = AutoConfig.from_pretrained(src)
        try:
            from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as names
        except ImportError:  # pragma: no cover
            names = {}
        if names and cfg.model_type not in names:
            raise WrongModelTypeError(
                f"{source!r} is a {cfg.model_type!r} model, not a generative vision-language "
                f"model (AutoModelForImageTextToText: Idefics3/SmolVLM, LLaVA, PaliGemma, ...)"
            )
        with hub_errors(src):
            model = AutoModelForImageTextToText.from_pretrained(src)
            processor = AutoProcessor.from_pretrained(src)
        return model, processor

    @classmethod
    def from_pretrained(cls, source: str, lora_r: int = 0, lora_targets=("q_proj", "v_proj"), **kw) -> "VLMRewardModel":
        """A zero-shot yes/no reward model on a VLM folder or hub id; ``lora_r > 0`` adds a fresh
        LoRA adapter for fine-tuning."""
        model, processor = cls.load_base(source)
        m = cls(model, processor, source, **kw)
        if lora_r > 0:
            m.lora = {"r": int(lora_r), "alpha": 2 * int(lora_r), "targets": list(lora_targets)}
            m._attach_lora()
        return m

    def _attach_lora(self, adapter_dir: Path | None = None):
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter_dir is not None:
            try:
                self.model = PeftModel.from_pretrained(self.model, str(adapter_dir), is_trainable=False)
            except Exception as e:
                raise CorruptCheckpointError(f"LoRA adapter in {adapter_dir} cannot be loaded: {e}") from e
        else:
            names = "|".join(self.lora["targets"])
            cfg = LoraConfig(
                r=self.lora["r"],
                lora_alpha=self.lora["alpha"],
                lora_dropout=0.0,
                target_modules=rf"^(?!.*(vision|image_tower|visual)).*\.({names})$",
            )
            self.model = get_peft_model(self.model, cfg)
        self.model.eval()

    # ------------------------------------------------------------------ inputs
    def prompt(self, instruction: str) -> str:
        q = self.question.format(instruction=instruction)
        if self.use_chat_template:
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True)
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{q}\nAnswer:"

    def _inputs(self, frames, instructions):
        from PIL import Image

        imgs = [Image.fromarray(f) for f in frames]
        if self.image_size:
            imgs = [im.resize((self.image_size, self.image_size), Image.BILINEAR) for im in imgs]
        texts = [self.prompt(s) for s in instructions]
        images = [[im] for im in imgs] if self.model_kind in NESTED_IMAGE_TYPES else imgs
        return self.processor(text=texts, images=images, return_tensors="pt", padding=True)

    def _yes_no_logit(self, inputs):
        out = self.model(**inputs)
        logits = out.logits.float()
        mask = inputs.get("attention_mask")
        if mask is None:
            last = torch.full((logits.shape[0],), logits.shape[1] - 1, dtype=torch.long)
        else:
            pos = torch.arange(mask.shape[1]).expand_as(mask)
            last = (pos * mask).argmax(dim=1)
        lg = logits[torch.arange(logits.shape[0]), last]
        lp = F.log_softmax(lg, dim=-1)
        return torch.logsumexp(lp[:, self.yes_ids], -1) - torch.logsumexp(lp[:, self.no_ids], -1)

    # ------------------------------------------------------------------ inference
    def predict_proba(self, frames, instruction, batch_size: int = 8) -> np.ndarray:
        frames = as_frames(frames)
        instr = as_instructions(instruction, len(frames))
        set_threads(self.num_threads)
        self.model.eval()
        out = []
        with torch.no_grad(), autocast_ctx(self.precision):
            for i in range(0, len(frames), batch_size):
                out.append(
                    torch.sigmoid(
                        self._yes_no_logit(self._inputs(frames[i : i + batch_size], instr[i : i + batch_size]))
                    )
                )
        return torch.cat(out).float().numpy().astype(np.float64) if out else np.zeros(0)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train,
        val=None,
        epochs: int = 3,
        lr: float = 2e-4,
        batch_size: int = 8,
        weight_decay: float = 0.0,
        pos_weight: float | str = "balanced",
        progress: bool = True,
        seed: int = 0,
        lora_r: int = 8,
        **_,
    ) -> dict:
        """LoRA fine-tuning on a FrameSet with BCE on the yes-vs-no logit."""
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        set_threads(self.num_threads)
        if not self.lora:
            self.lora = {"r": int(lora_r), "alpha": 2 * int(lora_r), "targets": ["q_proj", "v_proj"]}
            self._attach_lora()
        params = [p for n, p in self.model.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        y = torch.as_tensor(train.labels, dtype=torch.float32)
        n_pos, n_neg = float((y > 0.5).sum()), float((y <= 0.5).sum())
        pw = (n_neg / max(n_pos, 1.0)) if pos_weight == "balanced" else float(pos_weight)
        pw = torch.tensor(float(min(max(pw, 1.0), 100.0)))
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        n = len(y)

        def loss_of(b):
            with autocast_ctx(self.precision):
                logit = self._yes_no_logit(self._inputs(train.images[b], [train.instructions[j] for j in b]))
            return F.binary_cross_entropy_with_logits(logit.float(), y[b], pos_weight=pw)

        order = functools.partial(rng.permutation, n)
        accuracy = functools.partial(self.accuracy, val) if val is not None and len(val) else None
        hist = fit_minibatches(n, epochs, batch_size, order, loss_of, opt, None, progress, "LoRA yes/no", accuracy)
        for p in params:
            p.requires_grad_(False)
        self.model.eval()
        return hist

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {
            "source": self.source,
            "question": self.question,
            "lora": self.lora,
            "use_chat_template": self.use_chat_template,
            "image_size": self.image_size,
            "precision": self.precision,
            "num_threads": self.num_threads,
        }

    def _save_files(self, folder: Path) -> None:
        if self.lora:
            self.model.save_pretrained(str(folder / "adapter"))

    @classmethod
    def _from_checkpoint(cls, folder: Path, cfg: dict, **overrides) -> "VLMRewardModel":
        src = cfg["source"]
        if not os.path.isabs(src) and (folder / src).is_dir():
            src = str(folder / src)
        model, processor = cls.load_base(src)
        kw = dict(
            question=cfg.get("question", DEFAULT_QUESTION),
            threshold=cfg.get("threshold", 0.5),
            model_id=cfg.get("model_id", ""),
            num_threads=cfg.get("num_threads", 1),
            precision=cfg.get("precision", "auto"),
            lora=cfg.get("lora"),
            use_chat_template=cfg.get("use_chat_template"),
            image_size=cfg.get("image_size"),
        )
        kw.update(overrides)
        m = cls(model, processor, cfg["source"], **kw)
        if m.lora:
            ad = folder / "adapter"
            if not ad.is_dir():
                raise CorruptCheckpointError(f"checkpoint {folder} declares a LoRA adapter but {ad} is missing")
            m._attach_lora(ad)
        return m
