"""One processing element of the systolic array: an int8 MAC with its own weight memory."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .ecp5_mac import RegisteredMul8x8
from .params import rejected

__all__ = ["ProcessingElement", "fabric_product"]


def fabric_product(m, x, w, name="fabric", registered_levels=0):
    """``x * w`` for signed 8-bit ``x`` and ``w``, as a sum of shifted partial products (the
    top bit of ``w`` weighs -128), so that synthesis builds it from adders in fabric instead of
    mapping a ``*`` to a DSP. The eight terms are summed as a balanced tree of three adder
    levels, each sum its own named signal (kept, so that Yosys does not merge them into one
    long chain): three carry chains deep, not seven. The first ``registered_levels`` levels'
    sums (0, 1 or 2) are registered (``m.d.sync``; reset_less, as datapath, so they stay off
    the reset net): the product comes that many cycles after ``x`` and ``w``. With 1, neither
    half is longer than two carry chains (the whole tree in one cycle was the critical path of
    the ULX3S build, 13 ns with its routing); with 2, no stage is longer than one. Exact for all 65536 pairs (tested). Returns a signed 16-bit
    signal."""
    if registered_levels not in (0, 1, 2):
        raise ValueError(f"Registered levels must be 0, 1 or 2, not {registered_levels!r}")
    terms = [Mux(w[i], x.as_signed() << i, 0) for i in range(7)]
    terms.append(Mux(w[7], -(x.as_signed() << 7), 0))
    level = 0
    while len(terms) > 1:
        level += 1
        sums = []
        for index in range(0, len(terms), 2):
            total = Signal(signed(17), name=f"{name}_l{level}_{index // 2}",
                           reset_less=True, attrs={"keep": 1})
            domain = m.d.sync if level <= registered_levels else m.d.comb
            domain += total.eq(terms[index] + terms[index + 1])
            sums.append(total)
        terms = sums
    product = Signal(signed(16), name=f"{name}_product")
    m.d.comb += product.eq(terms[0][:16].as_signed())
    return product


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
    mac_latency : int
        Cycles from ``x_in`` to the product that is added (0, 2, 3 or 4): with 2 to 4 (only a
        PE that multiplies itself), the weight read and the product are each registered, so
        the longest path is one multiply or one adder, and ``psum_in`` must come
        ``mac_latency`` cycles after ``x_in``; the array's skew is unchanged since every PE has
        the same depth. 3 adds a register inside a fabric multiplier (after the first level of
        its adder tree) or after a DSP's product. 4 multiplies on a
        :class:`~.ecp5_mac.RegisteredMul8x8` (an ECP5 MULT18X18D with its own operand and
        product registers, fed from the PE's registers and read into one beside the adder),
        or in fabric with the first two adder levels registered
        (:attr:`pwconv.config.ArrayConfig.mac_latency`).
    fabric_multiplier : bool
        Build the product from adders (:func:`fabric_product`) instead of ``*`` (which
        synthesis maps to a DSP); needs ``mac_latency`` 3 or 4.
    external_product : bool
        ``False`` (default): the PE multiplies ``x_in * w[addr]`` itself. ``True``: the product
        comes from outside (a multiplier shared with another PE, e.g. one half of an iCE40
        SB_MAC16): the PE shows its weight on ``weight`` and adds ``product`` instead.
    weight_memory : bool
        ``True`` (default): the PE holds its weights. ``False``: they live outside (one wide
        memory per array row, or one shared by the PEs of a multiplier cell); the PE then takes
        its weight on ``w_in`` (or, with ``external_product``, only the product) and has no
        ``w_*`` or ``weight`` ports.

    Members
    -------
    addr_in : In(range(depth))
        Weight address, presented **one cycle before** the ``x_in`` it belongs to (the memory
        read is synchronous).
    x_in : In(signed(8))
        Input activation.
    psum_in : In(psum_in_shape)
        Partial sum from the PE above, ``mac_latency`` cycles after ``x_in``.
    addr_out, x_out : Out
        ``addr_in`` and ``x_in`` registered: one cycle of delay, for the PE to the right.
    psum_out : Out(psum_out_shape)
        ``psum_in + x_in * w[addr]``, registered: ``mac_latency + 1`` cycles after ``x_in``,
        one cycle after ``psum_in``; throughput one MAC per cycle.
    w_addr, w_data, w_en : In
        Only with ``weight_memory``: weight write port (``w_en`` writes ``w_data`` at
        ``w_addr``); write an address only while no beat that reads it is inside.
    weight : Out(signed(8))
        Only with ``external_product`` and ``weight_memory``: ``w[addr]`` for the ``x_in`` of
        this cycle
        (combinational, from the memory's read register).
    w_in : In(signed(8))
        Only without ``weight_memory`` and ``external_product``: the weight for this cycle's
        ``x_in`` (``w[addr]`` of an outside memory).
    product : In(signed(16))
        Only with ``external_product``: ``x_in * weight`` of ``mac_latency`` cycles before
        (an outside multiplier with that many registers).
    """

    def __init__(self, *, depth, psum_in_shape, psum_out_shape, external_product=False,
                 weight_memory=True, mac_latency=0, fabric_multiplier=False):
        if not isinstance(depth, int) or depth < 1:
            raise rejected(self, ValueError(
                f"Weight depth must be a positive integer, not {depth!r}"))
        if mac_latency not in (0, 2, 3, 4):
            raise rejected(self, ValueError(
                f"MAC latency must be 0, 2, 3 or 4, not {mac_latency!r}"))
        if fabric_multiplier and mac_latency not in (3, 4):
            raise rejected(self, ValueError("A fabric multiplier needs mac_latency 3 or 4"))
        if external_product and mac_latency not in (0, 2):
            raise rejected(self, ValueError(
                f"An outside product has mac_latency 0 or 2 (its cell's registers), "
                f"not {mac_latency}"))
        self._mac_latency = mac_latency
        self._fabric = bool(fabric_multiplier)
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
        elif not self._weight_memory:
            ports["w_in"] = In(signed(8))
        super().__init__(ports)

    @property
    def depth(self):
        return self._depth

    @property
    def mac_latency(self):
        return self._mac_latency

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
        weight = read.data if self._weight_memory else getattr(self, "w_in", None)
        psum_in = self.psum_in if self._has_psum_in else 0
        if self._external_product:
            if self._weight_memory:
                m.d.comb += self.weight.eq(read.data)
            product = self.product
        # reset_less datapath registers: they pack into the DSP's pipeline registers.
        addr_reg = Signal.like(self.addr_out, reset_less=True)
        x_reg = Signal.like(self.x_out, reset_less=True)
        psum_reg = Signal.like(self.psum_out, reset_less=True)
        if self._external_product:
            product = self.product
        elif self._mac_latency == 0:
            product = self.x_in * weight
        else:
            # Multiplier inputs registered (x_reg is also the value passed right; w_reg the
            # weight memory's output register), then its output: one multiply per stage. With
            # mac_latency 3 a fabric multiply is cut in two by its own register, and a DSP's
            # product is registered twice (the first register next to the DSP, the second
            # beside the adder: the route between them is a path of its own). With 4 a fabric
            # multiply is cut in three, and a DSP multiplies between its own registers (on
            # ECP5, where Yosys leaves them out of an inferred MULT18X18D), so the routes into
            # and out of the cell are register to register.
            w_reg = Signal(signed(8), reset_less=True)
            product = Signal(signed(16), reset_less=True)
            if self._fabric:
                multiply = fabric_product(m, x_reg, w_reg,
                                          registered_levels=self._mac_latency - 2)
            elif self._mac_latency == 4:
                m.submodules.multiplier = multiplier = RegisteredMul8x8()
                m.d.comb += [multiplier.a.eq(x_reg), multiplier.b.eq(w_reg)]
                multiply = multiplier.p
            elif self._mac_latency == 3:
                multiply = Signal(signed(16), reset_less=True)
                m.d.sync += multiply.eq(x_reg * w_reg)
            else:
                multiply = x_reg * w_reg
            m.d.sync += [w_reg.eq(weight), product.eq(multiply)]
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
