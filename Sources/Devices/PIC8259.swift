/// One Intel 8259A programmable interrupt controller (8086 mode).
/// `PIC8259Pair` wires two of them as on a PC; this type holds one chip's state.
public struct PIC8259Chip: Codable, Equatable {
  public private(set) var irr: UInt8 = 0
  public private(set) var isr: UInt8 = 0
  public private(set) var imr: UInt8 = 0
  /// Current input levels, for edge detection.
  private(set) var lineLevels: UInt8 = 0
  /// IRQ with the highest priority is `priorityBase`; rotation moves it.
  private(set) var priorityBase: UInt8 = 0
  public private(set) var vectorBase: UInt8 = 0
  private var readISR = false
  private var pollNext = false
  private var specialMask = false
  /// 0: operational; 1, 2, 3: expecting ICW2, ICW3, ICW4.
  private var initStep = 0
  private var needsICW4 = false
  private var single = false
  public private(set) var autoEOI = false
  private var rotateOnAutoEOI = false
  private var specialFullyNested = false
  /// ICW1.LTIM: every input level-triggered.
  private var levelTriggeredAll = false
  /// Edge/Level Control Register (ports 0x4D0/0x4D1): per-input level triggering.
  public internal(set) var elcr: UInt8 = 0
  let elcrMask: UInt8
  let isMaster: Bool

  init(isMaster: Bool) {
    self.isMaster = isMaster
    // IRQ0, 1, 2 (master) and 8, 13 (slave) are always edge-triggered.
    elcrMask = isMaster ? 0xF8 : 0xDE
  }

  private func isLevel(_ bit: UInt8) -> Bool { levelTriggeredAll || elcr & bit != 0 }

  mutating func setLine(_ irq: Int, high: Bool) {
    let bit = UInt8(1) << UInt8(irq & 7)
    if isLevel(bit) {
      if high { irr |= bit } else { irr &= ~bit }
    } else if high && lineLevels & bit == 0 {
      irr |= bit  // rising edge latches; the falling edge does not clear it
    }
    if high { lineLevels |= bit } else { lineLevels &= ~bit }
  }

  /// Priority rank (0 = highest) of the best bit in `mask`, 8 if none.
  private func rank(_ mask: UInt8) -> Int {
    guard mask != 0 else { return 8 }
    var r = 0
    while mask & (1 << ((UInt8(r) &+ priorityBase) & 7)) == 0 { r += 1 }
    return r
  }

  /// The IRQ (0-7) this chip would deliver now, given the cascade input.
  func pendingIRQ(cascadeInput: Bool) -> Int? {
    var requests = irr
    if cascadeInput { requests |= 0x04 }
    let r = rank(requests & ~imr)
    guard r < 8 else { return nil }
    var inService = isr
    if specialMask { inService &= ~imr }
    // Special fully nested: a further slave request may interrupt a slave in service.
    if specialFullyNested && isMaster { inService &= ~0x04 }
    guard r < rank(inService) else { return nil }
    return Int((UInt8(r) &+ priorityBase) & 7)
  }

  /// INTA for `irq`: request moves to in-service (or not, with auto-EOI).
  mutating func acknowledge(_ irq: Int) {
    let bit = UInt8(1) << UInt8(irq & 7)
    if autoEOI {
      if rotateOnAutoEOI { priorityBase = (UInt8(irq & 7) &+ 1) & 7 }
    } else {
      isr |= bit
    }
    // A level-triggered request stays while its line is high.
    if !isLevel(bit) { irr &= ~bit }
  }

  mutating func reset() {
    irr = 0
    isr = 0
    imr = 0
    priorityBase = 0
    readISR = false
    pollNext = false
    specialMask = false
    initStep = 0
    needsICW4 = false
    single = false
    autoEOI = false
    rotateOnAutoEOI = false
    specialFullyNested = false
    levelTriggeredAll = false
    // Level-triggered inputs that are high still request.
    irr = lineLevels & elcr
  }

  /// True if the next read of the command port is a poll (OCW3 P bit).
  var pollPending: Bool { pollNext }

  mutating func clearPoll() { pollNext = false }

  func readCommand() -> UInt8 { readISR ? isr : irr }

  func readData() -> UInt8 { imr }

  mutating func writeCommand(_ v: UInt8) {
    if v & 0x10 != 0 {
      // ICW1.
      let elcrKeep = elcr
      reset()
      elcr = elcrKeep
      irr = 0  // the edge-sense latches are reset
      needsICW4 = v & 0x01 != 0
      single = v & 0x02 != 0
      levelTriggeredAll = v & 0x08 != 0
      irr = levelTriggeredAll ? lineLevels : lineLevels & elcr
      initStep = 1
      return
    }
    if v & 0x08 != 0 {
      // OCW3.
      if v & 0x04 != 0 { pollNext = true }
      if v & 0x02 != 0 { readISR = v & 0x01 != 0 }
      if v & 0x40 != 0 { specialMask = v & 0x20 != 0 }
      return
    }
    // OCW2.
    let level = Int(v & 7)
    switch v >> 5 {
    case 0: rotateOnAutoEOI = false
    case 4: rotateOnAutoEOI = true
    case 1, 5:
      // Non-specific EOI: the highest-priority in-service IRQ.
      let r = rank(isr)
      if r < 8 {
        let irq = (UInt8(r) &+ priorityBase) & 7
        isr &= ~(1 << irq)
        if v >> 5 == 5 { priorityBase = (irq &+ 1) & 7 }
      }
    case 3: isr &= ~(UInt8(1) << UInt8(level))
    case 7:
      isr &= ~(UInt8(1) << UInt8(level))
      priorityBase = (UInt8(level) &+ 1) & 7
    case 6: priorityBase = (UInt8(level) &+ 1) & 7
    default: break  // 2: no operation
    }
  }

  mutating func writeData(_ v: UInt8) {
    switch initStep {
    case 1:
      vectorBase = v & 0xF8
      initStep = single ? (needsICW4 ? 3 : 0) : 2
    case 2:
      initStep = needsICW4 ? 3 : 0  // ICW3: cascade wiring is fixed on a PC
    case 3:
      autoEOI = v & 0x02 != 0
      specialFullyNested = v & 0x10 != 0
      initStep = 0
    default:
      imr = v
    }
  }

  mutating func writeELCR(_ v: UInt8) { elcr = v & elcrMask }
}

/// The PC's master/slave 8259A pair: master at 0x20-0x21, slave at 0xA0-0xA1
/// cascaded on master IR2, ELCR at 0x4D0-0x4D1.
///
/// Register it with `register(on:)`: the device sees absolute port numbers as offsets.
/// Devices drive ISA IRQs 0-15 through `setLevel(irq:high:)` (it is an
/// `InterruptLines`); the CPU side asks `hasPendingInterrupt` and `acknowledge()`.
public final class PIC8259Pair: PortIODevice, InterruptLines {
  public internal(set) var master = PIC8259Chip(isMaster: true)
  public internal(set) var slave = PIC8259Chip(isMaster: false)

  public init() {}

  /// The vectors a PC BIOS programs before it starts an OS (SeaBIOS, QEMU): IRQ0-7 at
  /// 0x08-0x0F and IRQ8-15 at 0x70-0x77, 8086 mode, the slave on IR2. For guests that
  /// no firmware started (multiboot, ELF) and that use the real-mode IVT as a BIOS
  /// leaves it, such as kvm-unit-tests' realmode (IRQ11 at vector 0x73). The inputs
  /// stay unmasked, as after power-up: no firmware here has handlers to mask them for.
  public func programAsFirmwareLeavesIt() {
    for (port, v): (UInt16, UInt8) in [
      (0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01),
      (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01),
    ] {
      ioWrite(offset: port, size: 1, value: UInt32(v))
    }
  }

  /// Port ranges and their `firstOffset`, so offsets equal port numbers.
  public func register(on bus: PortIOBus) throws {
    try bus.register(self, ports: 0x20...0x21, name: "i8259 master", firstOffset: 0x20)
    try bus.register(self, ports: 0xA0...0xA1, name: "i8259 slave", firstOffset: 0xA0)
    try bus.register(self, ports: 0x4D0...0x4D1, name: "i8259 ELCR", firstOffset: 0x4D0)
  }

  /// ISA IRQ 0-15. IRQ2 is the cascade input and is ignored, as on a PC.
  public func setLevel(irq: Int, high: Bool) {
    switch irq {
    case 0, 1, 3...7: master.setLine(irq, high: high)
    case 8...15: slave.setLine(irq - 8, high: high)
    default: break
    }
  }

  private var slaveOutput: Bool { slave.pendingIRQ(cascadeInput: false) != nil }

  /// The INTR line to the CPU.
  public var hasPendingInterrupt: Bool {
    master.pendingIRQ(cascadeInput: slaveOutput) != nil
  }

  /// The INTA cycle: returns the vector, moving the request into service.
  /// With nothing pending it returns the spurious IRQ7 (or IRQ15) vector.
  public func acknowledge() -> UInt8 {
    guard let irq = master.pendingIRQ(cascadeInput: slaveOutput) else {
      return master.vectorBase | 7
    }
    if irq == 2 {
      let slaveIRQ = slave.pendingIRQ(cascadeInput: false)
      if let s = slaveIRQ { slave.acknowledge(s) }
      master.acknowledge(2)
      return slave.vectorBase | UInt8(slaveIRQ ?? 7)
    }
    master.acknowledge(irq)
    return master.vectorBase | UInt8(irq)
  }

  /// Matches `InterruptInput.acknowledgeInterrupt()`; nil when nothing is pending.
  public func acknowledgeInterrupt() -> UInt8? {
    hasPendingInterrupt ? acknowledge() : nil
  }

  /// OCW3 poll: the read acknowledges like INTA and returns 0x80 | IRQ, or 0.
  private func poll(slavePort: Bool) -> UInt8 {
    if slavePort {
      slave.clearPoll()
      guard let irq = slave.pendingIRQ(cascadeInput: false) else { return 0 }
      slave.acknowledge(irq)
      return 0x80 | UInt8(irq)
    }
    master.clearPoll()
    guard let irq = master.pendingIRQ(cascadeInput: slaveOutput) else { return 0 }
    master.acknowledge(irq)
    return 0x80 | UInt8(irq)
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    switch offset {
    case 0x20: return UInt32(master.pollPending ? poll(slavePort: false) : master.readCommand())
    case 0x21: return UInt32(master.readData())
    case 0xA0: return UInt32(slave.pollPending ? poll(slavePort: true) : slave.readCommand())
    case 0xA1: return UInt32(slave.readData())
    case 0x4D0: return UInt32(master.elcr)
    case 0x4D1: return UInt32(slave.elcr)
    default: return 0xFF
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    let v = UInt8(truncatingIfNeeded: value)
    switch offset {
    case 0x20: master.writeCommand(v)
    case 0x21: master.writeData(v)
    case 0xA0: slave.writeCommand(v)
    case 0xA1: slave.writeData(v)
    case 0x4D0: master.writeELCR(v)
    case 0x4D1: slave.writeELCR(v)
    default: break
    }
  }
}
