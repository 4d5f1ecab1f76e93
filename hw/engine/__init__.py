"""The layer-program engines: command processor, depthwise convolution, ADD and pooling.

This room holds the gateware that runs a layer program's ops beside the pointwise array:

- :mod:`.depthwise` -- :class:`~.depthwise.DepthwiseEngine`, DEPTHWISE_CONV_2D (3x3 and 5x5,
  stride 1 and 2, SAME/VALID) from an NHWC byte stream through line buffers, requantized per
  channel by the array's own lane (:class:`pwconv.hw.requant_lane.RequantLane`); the same
  window walk runs MAX_POOL_2D and AVERAGE_POOL_2D;
- :mod:`.add` -- :class:`~.add.AddUnit`, the residual ADD of two streams (TFLite's reference
  arithmetic);
- :mod:`.mean` -- :class:`~.mean.MeanUnit`, MEAN over a tensor's pixels (global average
  pooling);
- :mod:`.descriptor` -- the 64-byte op descriptor as a StructLayout (from
  host/compiler/format.py ``DESCRIPTOR_FIELDS``);
- :mod:`.conv` -- :class:`~.conv.ConvEngine`, one CONV or FULLY_CONNECTED descriptor on the
  pointwise array, weights, parameters, pixels and results by DMA, filter groups as passes
  (channel chunks: not yet);
- :mod:`.im2col` -- :class:`~.im2col.Im2col`, a KxK conv's pixels gathered from an on-chip
  ring of input rows (each input byte read once per pass);
- :mod:`.processor` -- :class:`~.processor.CommandProcessor`, fetches the header and
  descriptors by DMA and runs them in order, with per-op and per-program cycle counters.
"""

#: Whether the board top (hw/board.py) wires the command processor to the link's RUN_PROGRAM
#: and READ_COUNTERS (docs/protocol.md): until then ``pwconv model --backend board-sim/board``
#: refuses a compiled model with one line (host/resident.py ``program_gateware``). The board's
#: IDENTITY reply should carry this as a capability bit once the gateware exists.
SERVES_RUN_PROGRAM = False
