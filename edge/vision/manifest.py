"""Model manifests (``models/NAME.toml``): file, sha256, task, input, preprocessing, labels.

A manifest is checked before anything runs: the model file must exist and match its sha256,
the label file must have at least as many lines as the classes it names.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mimamori.edge import contract
from mimamori.edge.contract import format_validation
from mimamori.edge.errors import MimamoriError

MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"
DEFAULT_MODEL = MODELS_DIR / "efficientnet-lite0.toml"


class ModelError(MimamoriError, ValueError):
    """A model manifest, model file or label file is missing, damaged or inconsistent."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="model name, shown at the hub")
    file: Path = Field(description="the .onnx file, relative to the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the .onnx file")
    task: Literal["classify", "detect"] = Field(description="whole-image classes or boxes")
    output: Literal["yolo", "yolox"] = Field(
        "yolo",
        description="detect: YOLOv5/YOLOv8 boxes (OnnxModel), or the raw YOLOX grid "
        "(letterboxed input, decoded by YoloxDetector)",
    )
    input_size: tuple[int, int] = Field(description="width, height the model takes")
    color: Literal["rgb", "bgr"] = Field("rgb", description="channel order the model expects")
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="per channel")
    std: tuple[float, float, float] = Field((255.0, 255.0, 255.0), description="per channel")
    labels: Path = Field(description="label file, one class per line")
    positive_classes: list[int] = Field(
        min_length=1, description="class ids the app looks for ('monkey', 'person')"
    )
    score_threshold: float = Field(0.5, gt=0, lt=1, description="default decision threshold")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="detect: box overlap merged by NMS")
    licence: str = Field(description="licence of weights and labels")
    provenance: str = Field(description="where the weights came from, how it was exported")

    @model_validator(mode="after")
    def _classes(self) -> Manifest:
        if min(self.positive_classes) < 0:
            raise ValueError("positive_classes must be >= 0")
        return self


def load_manifest(path: Path | str, *, check_hash: bool = True) -> Manifest:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model manifest not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ModelError(f"{path}: cannot read the manifest ({e})") from None
    try:
        m = Manifest.model_validate(data)
    except ValidationError as e:
        raise ModelError(f"{path}: {format_validation(e)}") from None
    m.file = path.parent / m.file
    m.labels = path.parent / m.labels
    if not m.file.is_file():
        raise ModelError(f"{path}: model file {m.file} not found")
    if check_hash:
        digest = sha256_of(m.file)
        if digest != m.sha256:
            raise ModelError(
                f"{m.file}: sha256 is {digest}, the manifest expects {m.sha256} "
                "(damaged or replaced model file)"
            )
    try:
        n_labels = len(m.labels.read_text(encoding="utf-8").splitlines())
    except OSError as e:
        raise ModelError(f"{path}: label file {m.labels}: {e}") from None
    if max(m.positive_classes) >= n_labels:
        raise ModelError(
            f"{path}: positive class {max(m.positive_classes)} but {m.labels.name} has only "
            f"{n_labels} labels"
        )
    return m


def with_update(m: Manifest, data_dir: Path) -> Manifest:
    """The manifest with its model file replaced by the signed update installed under the same
    name (``data_dir/models/NAME/current``, verified against its signed manifest when it was
    installed), if there is one; preprocessing and labels stay the manifest's."""
    current = data_dir / "models" / m.name / "current"
    if not current.is_file():
        return m
    file = current.resolve()
    return m.model_copy(update={"file": file, "sha256": sha256_of(file)})


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info(manifest: Manifest, data_dir: Path) -> contract.ModelInfo:
    """What the hub is told about a loaded model: its name, the sha256 of the file, and where
    it came from: the image's ``models/``, a signed update (``data_dir/models/NAME/vN.onnx``,
    with its version) or a file the config points at."""
    file = manifest.file.resolve()
    version = None
    source: Literal["image", "update", "local"]
    if file.is_relative_to(MODELS_DIR.resolve()):
        source = "image"
    elif file.is_relative_to((data_dir / "models").resolve()):
        source = "update"
        version = int(file.stem[1:]) if file.stem[1:].isdigit() else None
    else:
        source = "local"
    return contract.ModelInfo(
        name=manifest.name, sha256=manifest.sha256, version=version, source=source
    )
