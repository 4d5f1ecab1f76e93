"""`pwconv model MODEL`: the command's own arguments and what it does (pwconv/cli.py wires it)."""

import numpy as np

from .base import rounding_for

__all__ = ["RUNTIMES", "add_arguments", "run"]

#: Every runtime `--runtime` can name (which ones a model accepts depends on its format).
RUNTIMES = ("tflite-reference", "tflite-ruy", "tflite-xnnpack", "onnxruntime")


def add_arguments(parser):
    parser.add_argument("model", help="a full-int8 .tflite or a QDQ / QLinearConv .onnx model")
    parser.add_argument("--input", help="the model's input tensor (.npy; int8 for a full-int8 "
                        ".tflite, float32 for ONNX); default: a seeded random input")
    parser.add_argument("--out", help="write the model's final output to this file, as .npy "
                        "data under exactly this name (checked before the run)")
    parser.add_argument("--layers-out", metavar="DIR",
                        help="write each offloaded layer as DIR/NNN_op.npz (replay it with "
                        "`pwconv run`) and its output as DIR/NNN_op.y.npy")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        help="the runtime to match and compare with (picks the rounding mode); "
                        "default tflite-reference for .tflite, onnxruntime for .onnx")
    parser.add_argument("--input-seed", type=int, default=0,
                        help="seed of the random input when --input is not given")
    # The resident backends (host/resident_cli.py): the whole model from the board's memory.
    parser.add_argument("--report", metavar="R.json",
                        help="board-golden, board-sim, board: write cycles, clock, link and "
                        "SDRAM bytes per inference and the per-op table as JSON")
    parser.add_argument("--board-ops", choices=("array", "all"), default="array",
                        help="board-golden, board-sim, board: what the board's program runs: "
                        "CONV_2D and FULLY_CONNECTED (array), or also depthwise, ADD, pools "
                        "and MEAN (all)")
    parser.add_argument("--inferences", type=int, default=1,
                        help="board-golden, board-sim, board: inferences to run on the image "
                        "loaded once (the table shows the last)")
    parser.add_argument("--per-layer", action="store_true",
                        help="board, board-sim: stream each layer over the link as before, "
                        "instead of running the compiled model from the board's memory")


def run(args, make_accelerator):
    """Run the command; ``make_accelerator()`` builds the accelerator from the common flags."""
    from pwconv.cli import _check_output_dir, _check_output_file
    from . import load_model
    from .base import format_report
    if args.input_seed < 0:
        raise ValueError(f"--input-seed: must be a non-negative integer, not {args.input_seed}")
    model = load_model(args.model)
    runtime = args.runtime or model.runtimes[0]
    x = model.load_input(args.input) if args.input else model.random_input(args.input_seed)
    # Every output is checked before the run (which may take minutes), not after it.
    if args.out:
        _check_output_file("--out", args.out)
    if args.layers_out:
        _check_output_dir("--layers-out", args.layers_out)
    acc = make_accelerator()
    try:
        result = model.run(x, acc, runtime=runtime, layers_out=args.layers_out)
    finally:
        acc.close()
    if args.out:
        try:
            with open(args.out, "wb") as f:   # exactly this name: np.save(name) appends .npy
                np.save(f, result.output)
        except OSError as error:
            raise RuntimeError(f"cannot write {args.out}: {error.strerror or error}") from None
    reference = model.reference(x, runtime, result)
    print(format_report(model, result, acc, reference, runtime))
    if args.out:
        print(f"wrote {args.out}: {result.output.dtype.name} {list(result.output.shape)}")
    if args.layers_out:
        print(f"wrote {len(result.offloaded)} layers to {args.layers_out}/ "
              f"(replay one with `pwconv run {args.layers_out}/NNN_op.npz`)")
    if reference is None:
        return 0
    exact = np.array_equal(result.output, reference[0])
    if not exact and result.rounding != rounding_for(runtime):
        print(f"note: {runtime} rounds with the {rounding_for(runtime)!r} mode, which this "
              f"build's accelerator lacks: the mismatch above is measured with "
              f"{result.rounding!r}")
        return 0
    return 0 if exact else 1
