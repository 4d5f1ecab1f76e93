"""Generate the test models in tests/models/ (needs tensorflow-cpu: run it from its own venv).

    python3 -m venv /work/tfenv && /work/tfenv/bin/pip install tensorflow-cpu tflite onnx \
        onnxruntime
    /work/tfenv/bin/python tools/make_models.py            # writes tests/models/*
    /work/tfenv/bin/python tools/make_models.py --full     # + build/models/mobilenetv2_100_224
    /work/tfenv/bin/python tools/make_models.py --only none --resnet   # build/models/resnet50_64
    /work/tfenv/bin/python tools/make_models.py --only none --v1  # build/models/mobilenetv1_100_224
    /work/tfenv/bin/python tools/make_models.py --only none --efflite  # effnet_lite_like_128

Models (seeded, so a rerun writes the same arithmetic):
- mobilenetv2_035_96.tflite: keras.applications.MobileNetV2(alpha=0.35, 96x96, 100 classes,
  weights=None) with randomized BatchNorm statistics (fresh ones are degenerate: every channel
  would get the same scale), full-int8 (int8 input and output) by TFLite's converter.
- ops.tflite: a small Keras model that uses every op pwconv's host runs (CONV_2D 3x3 and 1x1,
  DEPTHWISE_CONV_2D, ADD, MAX_POOL_2D, AVERAGE_POOL_2D, PAD, CONCATENATION, MEAN, RESHAPE,
  FULLY_CONNECTED, SOFTMAX), float input and output (QUANTIZE, DEQUANTIZE).
- pointwise_qdq.onnx: pointwise Conv (+Relu, a residual Add) built with onnx.helper, quantized by
  onnxruntime.quantization.quantize_static (QDQ, uint8 activations, per-channel int8 weights).
  uint8 activations (ONNX Runtime's default, U8S8) because with int8 ones ONNX Runtime on x86
  rewrites only the Q/DQ pairs whose Q has one consumer to uint8 (QDQS8ToU8Transformer): a
  conv next to the residual's shared tensor then has a uint8 input and an int8 output, is not
  fused into QLinearConv and runs in float, which no integer accelerator reproduces bit for bit.
  pointwise_qdq_s8.onnx is that int8 variant (pwconv leaves those two convs to onnxruntime).
Each model comes with an input (``*.input.npy``) of the dtype the model takes.
"""

import argparse
import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "models"


def _randomize_batchnorm(model, rng):
    """Give every BatchNormalization layer plausible trained statistics."""
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            n = gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n).astype(np.float32),
                               rng.normal(0.0, 0.2, n).astype(np.float32),
                               rng.normal(0.0, 0.2, n).astype(np.float32),
                               rng.uniform(0.5, 2.0, n).astype(np.float32)])


def _spread_logits(model, samples, std=3.0):
    """Scale the last Dense layer so its logits spread (std ``std``): with random weights they
    are nearly equal and the softmax output quantizes to a handful of values, which would make
    the final-output comparison weak."""
    import keras
    dense = model.layers[-1] if isinstance(model.layers[-1], keras.layers.Dense) else \
        next(lay for lay in reversed(model.layers) if isinstance(lay, keras.layers.Dense))
    features = keras.Model(model.inputs, dense.input)
    f = np.concatenate([np.asarray(features(s)) for s in samples])
    kernel, bias = dense.get_weights()
    logits = f @ kernel
    dense.set_weights([kernel * (std / logits.std()), bias])


def _convert(model, shape, rng, int8_io):
    import tensorflow as tf
    samples = [rng.uniform(-1, 1, (1,) + shape).astype(np.float32) for _ in range(16)]
    _spread_logits(model, samples)

    def representative():
        for s in samples:
            yield [s]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert(), samples[0]


def _save(name, data, x):
    path = OUT / name
    path.write_bytes(data)
    np.save(path.with_suffix(".input.npy"), x)
    print(f"wrote {path} ({len(data) / 1e6:.2f} MB)")


def _quantize_input(data, x):
    """``x`` float as the int8 input of a full-int8 model ``data``."""
    import tflite
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    q = g.Tensors(g.Inputs(0)).Quantization()
    scale, zp = q.Scale(0), q.ZeroPoint(0)
    return np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)


def mobilenetv2(alpha, size, classes, seed):
    import keras
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                           weights=None, classes=classes)
    _randomize_batchnorm(model, rng)
    data, sample = _convert(model, (size, size, 3), rng, int8_io=True)
    return data, _quantize_input(data, sample)


def mobilenetv1(alpha, size, classes, seed):
    """keras.applications.MobileNet (V1) without its top, which reshapes through
    SHAPE/STRIDED_SLICE/PACK ops, plus average pooling and a Dense softmax head."""
    import keras
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=alpha, weights=None,
                                        include_top=False, pooling="avg")
    model = keras.Model(base.input,
                        keras.layers.Dense(classes, activation="softmax")(base.output))
    _randomize_batchnorm(model, rng)
    data, sample = _convert(model, (size, size, 3), rng, int8_io=True)
    return data, _quantize_input(data, sample)


def effnet_lite_like(size=128, seed=0):
    """EfficientNet-lite-style MBConv stack: ReLU6, 3x3 and 5x5 depthwise, residual ADDs."""
    import keras
    from keras import layers
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((size, size, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    cfg = [(1, 16, 3, 1, 1), (6, 24, 3, 2, 2), (6, 40, 5, 2, 2), (6, 80, 3, 2, 3),
           (6, 112, 5, 1, 3), (6, 192, 5, 2, 4), (6, 320, 3, 1, 1)]
    for expand, out, k, stride, repeat in cfg:
        for r in range(repeat):
            s = stride if r == 0 else 1
            cin = x.shape[-1]
            y = x
            if expand != 1:
                y = layers.ReLU(6.0)(layers.BatchNormalization()(
                    layers.Conv2D(cin * expand, 1, use_bias=False)(y)))
            y = layers.ReLU(6.0)(layers.BatchNormalization()(
                layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False)(y)))
            y = layers.BatchNormalization()(layers.Conv2D(out, 1, use_bias=False)(y))
            x = layers.Add()([x, y]) if s == 1 and cin == out else y
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(1280, 1, use_bias=False)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(1000, activation="softmax")(x)
    model = keras.Model(inp, out)
    _randomize_batchnorm(model, rng)
    data, sample = _convert(model, (size, size, 3), rng, int8_io=True)
    return data, _quantize_input(data, sample)


def resnet50(size, seed):
    import keras
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = keras.applications.ResNet50(input_shape=(size, size, 3), weights=None, classes=1000)
    _randomize_batchnorm(model, rng)
    data, sample = _convert(model, (size, size, 3), rng, int8_io=True)
    return data, _quantize_input(data, sample)


def ops_model(seed=1):
    import keras
    from keras import layers
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((16, 16, 3), batch_size=1)       # static shapes: RESHAPE stays one op
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inp)     # 8x8x16
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = layers.Conv2D(16, 1)(y)                                                      # pwconv
    x = layers.Add()([x, y])
    a = layers.MaxPooling2D(2)(x)                                                    # 4x4x16
    b = layers.ZeroPadding2D(1)(a)                                                   # 6x6x16
    b = layers.AveragePooling2D(3, strides=1)(b)                                     # 4x4x16
    b = layers.Conv2D(16, 3, padding="same")(b)
    x = layers.Concatenate()([a, b])                                                 # 4x4x32
    x = layers.Reshape((2, 8, 32))(x)                                                # RESHAPE
    x = layers.Conv2D(24, 1, activation="relu")(x)                                   # pwconv
    x = layers.GlobalAveragePooling2D()(x)                                           # MEAN
    x = layers.Dense(10)(x)                                                          # pwconv
    out = layers.Softmax()(x)
    model = keras.Model(inp, out)
    data, sample = _convert(model, (16, 16, 3), rng, int8_io=False)
    return data, sample


def pointwise_onnx(seed=2, uint8=True):
    """A float ONNX model of pointwise convs, quantized to QDQ by ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    rng = np.random.default_rng(seed)
    shape = (1, 16, 12, 12)
    chans = [16, 32, 32, 24]
    nodes, inits = [], []
    x = "input"
    for i, (c, f) in enumerate(zip(chans[:-1], chans[1:])):
        w = (rng.standard_normal((f, c, 1, 1)) * rng.uniform(0.3, 1.5, (f, 1, 1, 1))
             / np.sqrt(c)).astype(np.float32)
        bias = rng.normal(0, 0.1, f).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"conv{i}"],
                                      kernel_shape=[1, 1]))
        x = f"conv{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"]))
            x = f"relu{i}"
        if i == 1:                       # residual: relu0 + relu1 (32 channels both)
            nodes.append(helper.make_node("Add", ["relu0", x], ["res"]))
            x = "res"
    graph = helper.make_graph(
        nodes, "pointwise", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, (1, chans[-1], 12, 12))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(16)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            s = next(self.it, None)
            return None if s is None else {"input": s}
    float_path = OUT / "pointwise_float.onnx.tmp"
    onnx.save(model, float_path)
    out = OUT / ("pointwise_qdq.onnx" if uint8 else "pointwise_qdq_s8.onnx")
    quantize_static(str(float_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    os.remove(float_path)
    np.save(out.with_suffix(".input.npy"), samples[0])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def main():
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="also MobileNetV2 alpha 1.0 at 224x224 into build/models/")
    parser.add_argument("--resnet", action="store_true",
                        help="also ResNet50 at 64x64 into build/models/ (25 MB)")
    parser.add_argument("--v1", action="store_true",
                        help="also MobileNetV1 alpha 1.0 at 224x224 into build/models/")
    parser.add_argument("--efflite", action="store_true",
                        help="also an EfficientNet-lite-style MBConv stack at 128x128 into "
                        "build/models/")
    parser.add_argument("--only", choices=["mobilenet", "ops", "onnx", "none"])
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args()
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "onnx"):
        pointwise_onnx()
        pointwise_onnx(uint8=False)
    if args.only in (None, "ops"):
        _save("ops.tflite", *ops_model())
    if args.only in (None, "mobilenet"):
        _save("mobilenetv2_035_96.tflite", *mobilenetv2(0.35, 96, 100, seed=0))
    if args.full:
        OUT = OUT.parent.parent / "build" / "models"
        OUT.mkdir(parents=True, exist_ok=True)
        _save("mobilenetv2_100_224.tflite", *mobilenetv2(1.0, 224, 1000, seed=0))
    if args.resnet:
        OUT = Path(__file__).resolve().parent.parent / "build" / "models"
        OUT.mkdir(parents=True, exist_ok=True)
        _save("resnet50_64.tflite", *resnet50(64, seed=0))
    if args.v1:
        OUT = Path(__file__).resolve().parent.parent / "build" / "models"
        OUT.mkdir(parents=True, exist_ok=True)
        _save("mobilenetv1_100_224.tflite", *mobilenetv1(1.0, 224, 1000, seed=0))
    if args.efflite:
        OUT = Path(__file__).resolve().parent.parent / "build" / "models"
        OUT.mkdir(parents=True, exist_ok=True)
        _save("effnet_lite_like_128.tflite", *effnet_lite_like())


if __name__ == "__main__":
    main()
