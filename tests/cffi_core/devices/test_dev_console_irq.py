"""Interrupt-driven console input on the bare platform: a guest that sleeps in `sti; hlt`
until IRQ 4 (vector 36) says input is waiting, and echoes it from the handler."""

from __future__ import annotations

from cffi_core.asm import assemble
from cffi_core.platform import Platform

# The guest uses the manual's numbers (docs/devices.md §3, §5), not the Python constants, so a
# wrong constant in the model shows here.  The handler drains every waiting byte: the line is
# edge-triggered (devices.md §3), one interrupt may stand for several bytes.
ECHO = """
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ PIC_EOI, 0x20
.equ CONSOLE_DATA, 0x3f8
.equ CONSOLE_STATUS, 0x3f9
.equ CONSOLE_CTRL, 0x3fa
.equ CONSOLE_RX_IRQ, 1
.equ VEC_CONSOLE, 36                ; IRQ 4 at the reset PIC base 32
.equ RESULT_EXIT, 0x500
.equ IDT, 0x8000
_start: li sp, 0x9000
        li r1, IDT
        lidt r1
        li r2, IDT + 16 * VEC_CONSOLE
        la r3, rx
        sd r3, [r2]
        li r3, 1                    ; present interrupt gate, ring 0 (architecture.md §6.2)
        sd r3, [r2 + 8]
        li r1, 0xffef
        out PIC_MASK, r1            ; unmask IRQ 4 only
        li r1, ENABLE
        out CONSOLE_CTRL, r1
wait:   sti
        hlt
        beq r5, r0, wait            ; r5 = 1 once the handler has seen a '.'
        out RESULT_EXIT, r4         ; the exit code: bytes echoed
; rx: echo every waiting byte, counting them in r4; EOI; return
rx:     in r1, CONSOLE_STATUS
        beq r1, r0, rx_done
        in r2, CONSOLE_DATA
        out CONSOLE_DATA, r2
        addi r4, r4, 1
        li r3, 0x2e
        bne r2, r3, rx
        li r5, 1
        jmp rx
rx_done:
        li r1, PIC_EOI
        out PIC_CMD, r1
        iret
"""


def _platform(console_input: bytes, enable: int = 1) -> Platform:
    p = Platform(console_input=console_input)
    p.load(assemble(ECHO.replace("ENABLE", str(enable))))
    return p


def test_input_given_at_start_is_echoed_from_the_handler():
    r = _platform(b"hi.").run(100_000)
    assert (r.stop, r.exit_code, r.console) == ("exit", 3, b"hi.")
    assert r.counters["interrupt_36"] == 1  # one edge (the CONSOLE_CTRL write), three bytes


def test_host_input_wakes_the_halted_guest():
    p = _platform(b"ab")
    first = p.run(100_000)
    # "ab" echoed, then `sti; hlt` with nothing that could wake it: the run ends halted.
    assert (first.stop, first.console, first.counters["interrupt_36"]) == ("halted", b"ab", 1)
    p.devices.console.feed(b"cd.")  # an edge on IRQ 4 while the guest sleeps
    second = p.run(100_000)
    assert (second.stop, second.exit_code, second.console) == ("exit", 5, b"abcd.")
    assert second.counters["interrupt_36"] == 2


def test_without_console_rx_irq_the_guest_is_never_woken():
    r = _platform(b"hi.", enable=0).run(100_000)
    assert (r.stop, r.console, r.counters.get("interrupt_36", 0)) == ("halted", b"", 0)
