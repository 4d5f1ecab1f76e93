"""Run a whole quantized model (.tflite or QDQ .onnx) with its pointwise layers on pwconv.

``load_model(path)`` returns a :class:`~.base.Model` (one module per format behind one
interface): ``model.run(x, accelerator)`` runs every 1x1 convolution and fully connected layer on
the accelerator and everything else on the host, and returns the output with per-op stats.
"""

from pathlib import Path

from .base import Model, ModelError, ModelRun, OpStats, format_report

__all__ = ["load_model", "Model", "ModelError", "ModelRun", "OpStats", "format_report"]


def load_model(path):
    """Parse ``path`` (.tflite or .onnx, by suffix) into a runnable :class:`Model`.

    Raises
    ------
    ModelError
        The file is missing, corrupt, not quantized, or uses an unsupported op (one line).
    """
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from .tflite_model import TFLiteModel
        return TFLiteModel(path)
    if suffix == ".onnx":
        from .onnx_model import ONNXModel
        return ONNXModel(path)
    raise ModelError(f"{path}: unknown model format {suffix!r} (expected .tflite or .onnx)")
