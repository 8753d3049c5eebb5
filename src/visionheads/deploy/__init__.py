"""Exported models in use: `load_exported(path)` runs a file that `task.export` wrote (ONNX on onnxruntime,
TorchScript, ExportedProgram) and decodes its outputs as the task does, without the training stack."""

from visionheads.deploy.metadata import ExportMetadata, read_metadata
from visionheads.deploy.predictor import ExportedModel, load_exported

__all__ = ["ExportMetadata", "ExportedModel", "load_exported", "read_metadata"]
