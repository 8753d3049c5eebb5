"""What an exported file carries besides its graph, so that nothing else must travel with it: the task, the part,
the class names, the input (name, channels, size, dtype, layout) and its preprocessing, the outputs' names, the
mean and std the graph applies, thresholds, and the task's whole config.

ONNX files hold it as the metadata property `visionheads` (JSON); TorchScript and ExportedProgram files as the
extra file `visionheads.json`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionheads.errors import ConfigError

KEY = "visionheads"  # the ONNX metadata property
EXTRA_FILE = "visionheads.json"  # the extra file of TorchScript and ExportedProgram archives
VERSION = 1
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "exported-program": ".pt2"}  # format -> file suffix


@dataclass
class ExportMetadata:
    """The record of one exported graph (see the module docstring)."""

    task: str
    part: str  # "predict"; the autoencoder's "reconstruct", "encode" or "decode"
    format: str
    input_name: str  # "images" (B, C, H, W) uint8, "image" (C, H, W) uint8, or "codes" (B, latent) float32
    output_names: list[str]
    in_chans: int
    resize: list[int] | None  # (height, width) every image is resized to before the graph, None: as it is
    dynamic: bool  # the batch and image size may vary (else the graph takes its example's shape only)
    mean: list[float]
    std: list[float]
    class_names: list[str] | None
    config: dict[str, Any] = field(default_factory=dict)  # the task's config arguments
    version: int = VERSION

    def to_json(self) -> str:
        """The record as JSON text."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, source: str) -> ExportMetadata:
        """The record of a file (`source` names it in errors)."""
        try:
            record = json.loads(text)
            if int(record.get("version", 0)) > VERSION:
                raise ConfigError(f"{source}: exported by a newer visionheads (format {record['version']}); upgrade")
            return cls(**record)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{source}: its visionheads record is unreadable ({error})") from error


def format_of(path: Path) -> str:
    """The export format of a file, by its suffix."""
    for name, suffix in FORMATS.items():
        if path.name.endswith(suffix):
            return name
    raise ConfigError(
        f"{path}: not an exported model; exported files end in "
        f"{', '.join(FORMATS.values())} (visionheads export CHECKPOINT --format onnx|torchscript|exported-program)"
    )


def read_metadata(path: Path) -> ExportMetadata:
    """The visionheads record of an exported file; a ConfigError naming the file when it has none."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if format_of(path) == "onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # a truncated or foreign file raises many types inside protobuf
            raise ConfigError(f"{path}: not a readable ONNX file ({type(error).__name__})") from error
        props = {prop.key: prop.value for prop in model.metadata_props}
        text = props.get(KEY)
    else:
        text = _archive_member(path)
    if text is None:
        raise ConfigError(f"{path}: holds no visionheads record; export it with `visionheads export` or task.export")
    return ExportMetadata.from_json(text, str(path))


def _archive_member(path: Path) -> str | None:
    # TorchScript and torch.export archives are zip files holding extra files under <root>/extra/ (or extra/).
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"extra/{EXTRA_FILE}")), None)
            return archive.read(name).decode() if name else None
    except zipfile.BadZipFile as error:
        raise ConfigError(f"{path}: not a readable {format_of(path)} archive") from error
