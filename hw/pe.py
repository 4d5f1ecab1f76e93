"""One processing element of the systolic array: an int8 MAC with its own weight memory."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .params import rejected

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """An int8 x int8 multiply-accumulate cell with a private, address-indexed weight memory.

    Inputs enter from the left (``x``, ``addr``) and from above (``psum_in``); the same values
    leave, one cycle later, to the right and below. The weight memory holds one int8 weight per
    address (one per (column tile, input beat) of the layer), so a layer larger than the array is
    folded in time without moving weights.

    Parameters
    ----------
    depth : int
        Weight words in this PE's memory.
    psum_in_shape : ShapeLike or None
        Shape of the partial sum from above; ``None`` for the top row (adds zero).
    psum_out_shape : ShapeLike
        Shape of the partial sum passed down; must hold ``psum_in + x * w`` exactly.
    external_product : bool
        ``False`` (default): the PE multiplies ``x_in * w[addr]`` itself. ``True``: the product
        comes from outside (a multiplier shared with another PE, e.g. one half of an iCE40
        SB_MAC16): the PE shows its weight on ``weight`` and adds ``product`` instead.
    weight_memory : bool
        ``True`` (default): the PE holds its weights. ``False`` (needs ``external_product``):
        they live outside too (a memory shared by the PEs of one multiplier cell), so the PE
        only passes ``addr`` and ``x`` on and adds the product; it has no ``w_*`` or ``weight``
        ports.

    Members
    -------
    addr_in : In(range(depth))
        Weight address, presented **one cycle before** the ``x_in`` it belongs to (the memory
        read is synchronous).
    x_in : In(signed(8))
        Input activation.
    psum_in : In(psum_in_shape)
        Partial sum from the PE above, aligned with ``x_in``.
    addr_out, x_out : Out
        ``addr_in`` and ``x_in`` registered: one cycle of delay, for the PE to the right.
    psum_out : Out(psum_out_shape)
        ``psum_in + x_in * w[addr]``, registered: latency 1, throughput one MAC per cycle.
    w_addr, w_data, w_en : In
        Only with ``weight_memory``: weight write port (``w_en`` writes ``w_data`` at ``w_addr``); loads are done while the
        array is idle.
    weight : Out(signed(8))
        Only with ``external_product`` and ``weight_memory``: ``w[addr]`` for the ``x_in`` of this cycle
        (combinational, from the memory's read register).
    product : In(signed(16))
        Only with ``external_product``: ``x_in * weight``, combinationally, in the same cycle.
    """

    def __init__(self, *, depth, psum_in_shape, psum_out_shape, external_product=False,
                 weight_memory=True):
        if not isinstance(depth, int) or depth < 1:
            raise rejected(self, ValueError(
                f"Weight depth must be a positive integer, not {depth!r}"))
        if not weight_memory and not external_product:
            raise rejected(self, ValueError(
                "A PE without a weight memory needs external_product=True"))
        self._depth = depth
        self._has_psum_in = psum_in_shape is not None
        self._external_product = bool(external_product)
        self._weight_memory = bool(weight_memory)
        addr_shape = unsigned(max(1, (depth - 1).bit_length()))
        ports = {
            "addr_in":  In(addr_shape),
            "x_in":     In(signed(8)),
            "addr_out": Out(addr_shape),
            "x_out":    Out(signed(8)),
            "psum_out": Out(psum_out_shape),
        }
        if self._weight_memory:
            ports.update({
                "w_addr": In(addr_shape),
                "w_data": In(signed(8)),
                "w_en":   In(1),
            })
        if self._has_psum_in:
            ports["psum_in"] = In(psum_in_shape)
        if self._external_product:
            if self._weight_memory:
                ports["weight"] = Out(signed(8))
            ports["product"] = In(signed(16))
        super().__init__(ports)

    @property
    def depth(self):
        return self._depth

    @property
    def external_product(self):
        return self._external_product

    @property
    def weight_memory(self):
        return self._weight_memory

    def elaborate(self, platform):
        m = Module()
        if self._weight_memory:
            m.submodules.weights = weights = memory.Memory(
                shape=signed(8), depth=self._depth, init=[])
            read = weights.read_port(domain="sync")
            write = weights.write_port()
            m.d.comb += [
                read.addr.eq(self.addr_in),
                write.addr.eq(self.w_addr),
                write.data.eq(self.w_data),
                write.en.eq(self.w_en),
            ]
        psum_in = self.psum_in if self._has_psum_in else 0
        if self._external_product:
            if self._weight_memory:
                m.d.comb += self.weight.eq(read.data)
            product = self.product
        else:
            product = self.x_in * read.data
        # reset_less datapath registers: they pack into the DSP's pipeline registers.
        addr_reg = Signal.like(self.addr_out, reset_less=True)
        x_reg = Signal.like(self.x_out, reset_less=True)
        psum_reg = Signal.like(self.psum_out, reset_less=True)
        m.d.sync += [
            addr_reg.eq(self.addr_in),
            x_reg.eq(self.x_in),
            psum_reg.eq(psum_in + product),
        ]
        m.d.comb += [
            self.addr_out.eq(addr_reg),
            self.x_out.eq(x_reg),
            self.psum_out.eq(psum_reg),
        ]
        return m
