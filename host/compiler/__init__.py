"""The layer-program compiler: a model -> one SDRAM memory image the board's engine runs.

``format`` holds the binary format (header, descriptors, records), ``plan`` the tensor arena
planned by liveness, ``compile`` the compiler (:func:`compile_model`); the reference executor
of an image is :mod:`pwconv.golden.program`. The format is documented in docs/program.md.
"""
