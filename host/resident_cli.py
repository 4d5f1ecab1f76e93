"""`pwconv model M --backend board-golden|board-sim|board`: a whole model from the board's memory.

The front end of host/resident.py (pwconv/cli.py routes the resident backends here): load and
check the model and input, compile it for the array (a model that does not fit the SDRAM, the
weight memory or the program's limits is refused with one line, exit 2, before a device is
opened), open the device, load the image once, run ``--inferences`` inferences, print the per-op
table of the last, compare the output bit for bit with the runtime (ai-edge-litert, as
`pwconv model` does), and write ``--report`` JSON.
"""

import json

import numpy as np

__all__ = ["run"]


def run(args, cfg):
    """Run the command for ``args`` (the parsed `pwconv model` flags) on an array of ``cfg``;
    returns the exit status (0 bit-exact or not compared, 1 not bit-exact)."""
    from pwconv.cli import _check_output_file
    from .compiler.compile import ARRAY_OPS, BOARD_OPS, compile_model
    from .model import load_model
    from .model.base import ModelError
    from .model.tflite_model import TFLiteModel
    from .resident import (ResidentModel, format_table, open_program_board, program_gateware,
                           report_dict)
    if args.input_seed < 0:
        raise ValueError(f"--input-seed: must be a non-negative integer, not {args.input_seed}")
    if args.inferences < 1:
        raise ValueError(f"--inferences: must be a positive integer, not {args.inferences}")
    if args.layers_out:
        raise ValueError(f"--layers-out: not available with --backend {args.backend} (the "
                         f"layers run inside the board's program); use --per-layer")
    model = load_model(args.model)
    if not isinstance(model, TFLiteModel):
        raise ModelError(f"{args.model}: --backend {args.backend} runs .tflite models only "
                         f"(the layer-program compiler takes .tflite)")
    runtime = args.runtime or model.runtimes[0]
    if runtime not in model.runtimes:
        raise ModelError(f"--runtime: {runtime!r} cannot run {model.path.name} (choose from "
                         f"{', '.join(model.runtimes)})")
    x = model.load_input(args.input) if args.input else model.random_input(args.input_seed)
    for flag in ("out", "report"):
        if getattr(args, flag):
            _check_output_file(f"--{flag}", getattr(args, flag))
    if not program_gateware(args.backend):
        open_program_board(args.backend)       # raises NoProgramGateware: one line
    board_ops = BOARD_OPS if args.board_ops == "all" else ARRAY_OPS
    compiled, memory = None, None
    if args.backend != "board":         # the array is known: refused before a device is opened
        compiled = compile_model(model, cfg, runtime=runtime, board_ops=board_ops)
        if args.backend == "board-sim":     # a simulated memory just large enough
            memory = 1 << max(12, (compiled.header.image_bytes - 1).bit_length())
    device = open_program_board(args.backend, cfg if args.backend != "board" else None,
                                port=args.port, baud=args.baud, memory_bytes=memory)
    try:
        resident = ResidentModel(model, device, runtime=runtime, board_ops=board_ops,
                                 compiled=compiled)
        for _ in range(args.inferences):
            result = resident.run(x)
    finally:
        device.close()
    reference = model.reference(x, runtime, None)
    exact = None if reference is None else bool(np.array_equal(result.output, reference[0]))
    c = resident.compiled
    print(f"model: {model.path.name}, {len(model.ops)} ops; {args.backend} "
          f"{cfg.rows}x{cfg.cols} array; image {c.header.image_bytes:,} bytes "
          f"(id {resident.image_id:#010x}), {c.header.descriptor_count} descriptors, "
          f"{len(c.segments)} host segment(s); loaded {resident.loads} time(s) for "
          f"{args.inferences} inference(s)")
    print()
    print(format_table(model, result, device))
    if exact is None:
        print(f"bit-exact vs {runtime}: not checked ({runtime} is not installed)")
    else:
        print(f"bit-exact vs {runtime}: {'yes' if exact else 'NO'} (final output)")
    if args.out:
        try:
            with open(args.out, "wb") as f:
                np.save(f, result.output)
        except OSError as error:
            raise RuntimeError(f"cannot write {args.out}: {error.strerror or error}") from None
        print(f"wrote {args.out}: {result.output.dtype.name} {list(result.output.shape)}")
    if args.report:
        data = report_dict(model, resident, result, device, exact)
        data.update(backend=args.backend, runtime=runtime, inferences=args.inferences,
                    loads=resident.loads)
        try:
            with open(args.report, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
        except OSError as error:
            raise RuntimeError(f"cannot write {args.report}: {error.strerror or error}") \
                from None
        print(f"wrote {args.report}")
    return 0 if exact is not False else 1
