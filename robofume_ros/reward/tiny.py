"""Tiny random models saved as real ``transformers`` folders, for tests and benchmarks.

They go through exactly the production ``from_pretrained`` path: a word-level tokenizer trained on
the spot with ``tokenizers`` (appending an end-of-sequence token, which CLIP pools at), a locally
constructed image processor, and a small config. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a photo of the robot that has not yet finished task open close drawer window put ball bin pick place "
    "cube red square present is done answer yes no user assistant press button turn dial push puck goal"
).split()


def train_tokenizer(extra=(), specials=("<pad>", "<unk>", "<s>", "</s>"), add_bos=False):
    """A PreTrainedTokenizerFast whose post-processor appends </s> (and optionally prepends <s>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = [
        " ".join(WORDS),
        " ".join(w.capitalize() for w in WORDS),
        " ".join(extra),
        "Is the task 'x' done? Answer yes or no. : ' ? . ,",
    ]
    trainer = trainers.WordLevelTrainer(special_tokens=list(specials) + list(extra), min_frequency=1)
    tok.train_from_iterator(corpus * 2, trainer)
    eos = tok.token_to_id("</s>")
    bos = tok.token_to_id("<s>")
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=32,
    )


def make_tiny_clip(folder, image_size: int = 32, kind: str = "clip", seed: int = 0):
    """A tiny CLIP (or SigLIP with ``kind="siglip"``) folder with tokenizer and image processor."""
    import torch

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = train_tokenizer()
    common_t = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    common_v = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )
    if kind == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        cfg = CLIPConfig(text_config=common_t, vision_config=common_v, projection_dim=16)
        model = CLIPModel(cfg)
        proc = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
    elif kind == "siglip":
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        common_t.pop("bos_token_id")
        cfg = SiglipConfig(text_config=common_t, vision_config=common_v)
        model = SiglipModel(cfg)
        proc = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def make_tiny_text_encoder(folder, seed: int = 0):
    """A tiny BERT sentence-encoder folder (stand-in for the MiniLM text tower)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = train_tokenizer()
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_tiny_efficientnet(folder, seed: int = 0):
    """A tiny random EfficientNet-Lite folder (registered model type ``efficientnet_lite``)."""
    import torch
    from ..vision.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel

    torch.manual_seed(seed)
    cfg = EfficientNetLiteConfig(
        blocks=((3, 1, 1, 8, 8, 1), (3, 2, 2, 8, 16, 1)), stem_channels=8, head_channels=32, image_size=32
    )
    EfficientNetLiteModel(cfg).save_pretrained(folder)
    return Path(folder)


def make_tiny_llava(folder, image_size: int = 32, seed: int = 0):
    """A tiny LLaVA (CLIP vision tower + Llama language model) folder with a processor."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = train_tokenizer(extra=("<image>",), add_bos=False)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    patch = 8
    vcfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    tcfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vcfg,
        text_config=tcfg,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(cfg)
    improc = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    proc = LlavaProcessor(
        image_processor=improc,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder
