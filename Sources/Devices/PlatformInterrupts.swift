// Wiring the PC platform (what the VMM does once per machine):
//
//   let clock: GuestClock = deterministic ? ManualClock() : HostMonotonicClock()
//   let tsc = GuestTSC(clock: clock, frequency: tscHz)          // RDTSC, MSR 0x10
//   let pic = PIC8259Pair();            try pic.register(on: portBus)    // 0x20, 0xA0, 0x4D0
//   let ioapic = IOAPIC();              try ioapic.register(on: mmioBus) // 0xFEC00000
//   let lapic = LocalAPIC(clock: clock, tsc: tsc); try lapic.register(on: mmioBus)
//   ioapic.connect(to: lapic)                                    // messages + EOI broadcast
//   let irqs = ISAInterruptRouter(pic: pic, ioapic: ioapic)      // devices' InterruptLines
//   let pit = PIT8254(clock: clock, irq0: IRQLine(0, lines: irqs)); try pit.register(on: portBus)
//   let rtc = CMOSRTC(clock: clock, irq: IRQLine(8, lines: irqs), memoryBelow4G: ..., ...)
//   let cpuInput = PlatformInterrupts(lapic: lapic, pic: pic)    // the interpreter's InterruptInput
//
// Run loop: after each exit (and while the CPU halts), poll every TimedDevice
// (pit, rtc, lapic) whose `nextDeadline` has passed. A halted CPU waits until
// the earliest deadline: a host-clock VMM sleeps until then, a deterministic
// one sets its ManualClock to it. MSR 0x1B goes to `lapic.writeAPICBase`/
// `apicBase`, MSR 0x6E0 to `lapic.writeTSCDeadline`/`readTSCDeadline`.

/// The PC's interrupt wiring as devices see it: each ISA IRQ 0-15 goes to
/// both the 8259 pair and the IOAPIC, so one set of device wiring works
/// whichever controller the guest programs. ISA IRQ0 lands on IOAPIC pin 2,
/// the override the MADT declares; lines 16-23 (PCI) reach the IOAPIC only.
public final class ISAInterruptRouter: InterruptLines {
  public let pic: PIC8259Pair
  public let ioapic: IOAPIC

  public init(pic: PIC8259Pair, ioapic: IOAPIC) {
    self.pic = pic
    self.ioapic = ioapic
  }

  /// The IOAPIC pin an ISA IRQ or GSI arrives on.
  public static func ioapicPin(forIRQ irq: Int) -> Int { irq == 0 ? 2 : irq }

  public func setLevel(irq: Int, high: Bool) {
    if irq < 16 { pic.setLevel(irq: irq, high: high) }
    // Pin 2 belongs to IRQ0: the PIC's cascade input has no IOAPIC pin.
    if irq != 2 { ioapic.setLevel(irq: ISAInterruptRouter.ioapicPin(forIRQ: irq), high: high) }
  }
}

/// What the interpreter's CPU asks at instruction boundaries: the local APIC
/// first, then the 8259 when its INTR reaches the CPU (APIC globally
/// disabled, or LINT0 unmasked in ExtINT mode: virtual-wire mode), as QEMU's
/// cpu_get_pic_interrupt does.
///
/// Its members match `Engine.InterruptInput`; the VMM declares the conformance
/// (`extension PlatformInterrupts: InterruptInput {}`), since Devices does
/// not import Engine.
public final class PlatformInterrupts {
  public let lapic: LocalAPIC
  public let pic: PIC8259Pair

  public init(lapic: LocalAPIC, pic: PIC8259Pair) {
    self.lapic = lapic
    self.pic = pic
  }

  public var hasPendingInterrupt: Bool {
    lapic.hasPendingInterrupt || (lapic.acceptsPICInterrupts && pic.hasPendingInterrupt)
  }

  public func acknowledgeInterrupt() -> UInt8? {
    if lapic.hasPendingInterrupt { return lapic.acknowledge() }
    if lapic.acceptsPICInterrupts && pic.hasPendingInterrupt { return pic.acknowledge() }
    return nil
  }

  /// An NMI the local APIC latched (a self-NMI IPI), taken whatever IF says.
  public var hasPendingNMI: Bool { lapic.nmiPending }

  public func acknowledgeNMI() { lapic.acknowledgeNMI() }
}
