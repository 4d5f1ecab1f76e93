"""``python -m pwconv.host.compiler M.tflite``: compile a model and print its per-op table."""

import argparse
import sys
from pathlib import Path

from pwconv.config import ArrayConfig
from ..model import ModelError, load_model
from .compile import ARRAY_OPS, BOARD_OPS, compile_model


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pwconv.host.compiler",
        description="Compile a .tflite model into a layer-program memory image "
                    "(docs/program.md) and print where each op runs and its traffic.")
    parser.add_argument("model", type=Path, help="a full-int8 .tflite model")
    parser.add_argument("--runtime", default=None,
                        help="runtime to be bit-exact with (default tflite-reference)")
    parser.add_argument("--array-only", action="store_true",
                        help="only CONV_2D and FULLY_CONNECTED on the board (issue 25's engine)")
    parser.add_argument("--no-fuse", action="store_true", help="keep residual ADDs separate")
    parser.add_argument("--out", type=Path, help="write the image here")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        compiled = compile_model(model, ArrayConfig(), runtime=args.runtime,
                                 board_ops=ARRAY_OPS if args.array_only else BOARD_OPS,
                                 fuse_residual=not args.no_fuse)
    except ModelError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(compiled.table())
    board = [r for r in compiled.ops if r.where == "board"]
    print(f"board ops: {len(board)}; MACs {sum(r.macs for r in board):,}; SDRAM bytes per "
          f"inference: minimum {sum(r.min_bytes for r in board):,}, moved "
          f"{compiled.sdram_bytes_per_inference:,}")
    if args.out is not None:
        args.out.write_bytes(compiled.image)
        print(f"image written to {args.out} (id {compiled.header.image_id:#010x})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
