"""How zoo.lite turns the one-clip SavedModel into .tflite bytes: float32, float16 or int8.

int8 never touches the feature front end (the ops under FEATURES_SCOPE): the power spectrum
spans ten orders of magnitude before the log, and 8 bits per frame (what a hybrid kernel gives
the mel product's input) or per tensor ruin it. Measured on mfcc_cnn/3 (360 test clips),
quantising everything flips 71% of the labels (UA 50.2 -> 27.4); with the front end in float:

- `weights` (default): dynamic-range quantisation. Conv and dense weights of 1024 values or
  more are stored as int8 (per output channel) and run by TFLite's hybrid kernels, which
  quantise their float inputs per call; activations are float32 between ops. No calibration.
  TFLite's dynamic-range quantiser has no way to leave ops out, so the front end's matrices
  (mel filterbank, DCT, DFT) are put back from the float32 conversion afterwards
  (restore_float): their ops then run the plain float kernels. mfcc_cnn/3: UA 49.0, 98% of
  labels the same as the SavedModel; rounding the same weights to int8 in Keras (float
  compute) gives the same 49.0, so the loss is the weights' precision, not the hybrid kernels.
- `full`: full-integer quantisation of the network: int8 weights and int8 activations with
  ranges calibrated on clips from the training split of --data; the front end stays float
  (mlir_quantize with the front end's nodes denylisted, the two steps QuantizationDebugger
  uses; the converter has no public switch for it). mfcc_cnn/3: UA 44.8, 74% of labels the
  same: this model's re-fitted head standardises an embedding some of whose dimensions vary
  very little, so small activation errors anywhere in the network move its decision.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from zoo.inference.lite import SIGNATURE, LiteError

FEATURES_SCOPE = "features"  # name scope of the feature front end in zoo.lite.LiteModule
INT8_MODES = ("weights", "full")


def is_feature_node(name: str) -> bool:
    """Whether a TFLite tensor name (fused ops: 'a;b') comes from the feature front end."""
    return any(part.startswith(FEATURES_SCOPE + "/") for part in name.split(";"))


def converter(saved: Path):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE])


def tflite_bytes(saved: Path, quantize: str = "none", int8: str = "weights", calibration=None,
                 progress: bool = True) -> bytes:
    """The SavedModel at `saved` (one signature, SIGNATURE) converted as asked."""
    import tensorflow as tf

    conv = converter(saved)
    if quantize == "none":
        return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        conv.target_spec.supported_types = [tf.float16]
        return conv.convert()
    if int8 == "weights":
        return restore_float(conv.convert(), converter(saved).convert(), is_feature_node)
    return full_integer(conv, calibration, progress)


def full_integer(conv, calibration, progress: bool) -> bytes:
    """Calibrate on the clips, then quantise all but the front end to int8."""
    from tensorflow.lite.python.convert import mlir_quantize
    from tqdm import tqdm

    from pipelines.common.tfenv import _quiet_stderr
    from zoo.inference.lite import interpreter

    def representative():
        for clip in tqdm(calibration, desc="calibrating", unit="clip", disable=not progress,
                         leave=False):
            yield {"waveform": clip[None].astype(np.float32)}

    conv.representative_dataset = representative
    conv._experimental_calibrate_only = True  # noqa: SLF001 - see the module docstring
    with warnings.catch_warnings():  # the calibrator's tf.lite.Interpreter deprecation notice
        warnings.simplefilter("ignore")
        calibrated = conv.convert()
    names = [t["name"] for t in interpreter(content=calibrated).get_tensor_details()]
    with _quiet_stderr():  # mlir_quantize prints its settings
        return mlir_quantize(calibrated,
                             denylisted_nodes=[n for n in names if is_feature_node(n)])


def restore_float(quantized: bytes, reference: bytes, keep) -> bytes:
    """`quantized` with the int8 constant inputs of every op whose output name satisfies
    keep(name) replaced by the float32 constants of the same op in `reference` (the float
    conversion of the same graph), so those ops run in float32."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model, ref = fb.read_model_from_bytearray(quantized), fb.read_model_from_bytearray(reference)
    int8, float32 = schema.TensorType.INT8, schema.TensorType.FLOAT32
    for graph, ref_graph in zip(model.subgraphs, ref.subgraphs):
        ref_ops = {ref_graph.tensors[op.outputs[0]].name: op for op in ref_graph.operators}
        for op in graph.operators:
            name = graph.tensors[op.outputs[0]].name
            if not keep(name.decode()):
                continue
            for position, index in enumerate(op.inputs):
                tensor = graph.tensors[index] if index >= 0 else None
                if tensor is None or tensor.type != int8:
                    continue
                source = ref_ops.get(name)
                ref_tensor = (ref_graph.tensors[source.inputs[position]]
                              if source is not None and position < len(source.inputs) else None)
                if ref_tensor is None or ref_tensor.type != float32 or \
                        list(ref_tensor.shape) != list(tensor.shape):
                    raise LiteError(f"int8: cannot keep {name.decode()} in float32 (no "
                                    "matching op in the float conversion)")
                model.buffers[tensor.buffer].data = ref.buffers[ref_tensor.buffer].data
                tensor.type, tensor.quantization = float32, None
    return bytes(fb.convert_object_to_bytearray(model))


def unsupported_ops(message: str) -> list[str]:
    """TF op names a converter error says have no TFLite builtin."""
    ops = set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    for line in re.findall(r"TF Select ops: ([^\n]*)", message):
        ops.update(op.strip() for op in line.split(",") if op.strip())
    return sorted(ops)


def conversion_error(path, err: Exception) -> LiteError:
    """One line naming the ops without a TFLite builtin, or the converter's first error."""
    message = str(err)
    ops = unsupported_ops(message)
    if ops:
        return LiteError(f"{path}: conversion failed, no TFLite builtin for {', '.join(ops)} "
                         "(LiteRT has no TF Select kernels)")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = next((line for line in lines if "error" in line.lower()),
                 lines[0] if lines else type(err).__name__)
    return LiteError(f"{path}: conversion failed ({first[:200]})")
