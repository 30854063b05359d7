/// The ACPI fixed-hardware PM registers the FADT describes (PIIX4-like):
/// PM1a event block (PM1_STS, PM1_EN), PM1a control block, and the PM timer.
/// There is no SMI_CMD, so the machine is always in ACPI mode: SCI_EN reads 1.
/// Writing SLP_EN with the \_S5 sleep type powers the machine off.
/// Registered as 12 ports from `pmBase` (offsets 0-3 event, 4-5 control, 8-11 timer).
public final class ACPIPowerManagement: PortIODevice {
  public static let timerFrequency: UInt64 = 3_579_545

  private let control: MachineControl
  private let clock: GuestClock
  private let s5SleepType: UInt16
  var status: UInt16 = 0
  var enable: UInt16 = 0
  var pmControl: UInt16 = 1  // SCI_EN

  public init(control: MachineControl, clock: GuestClock, s5SleepType: UInt16) {
    self.control = control
    self.clock = clock
    self.s5SleepType = s5SleepType
  }

  public func register(on bus: PortIOBus, base: UInt16) throws {
    try bus.register(self, ports: base...(base + 11), name: "ACPI PM")
  }

  private var timer: UInt32 {
    let ns = clock.nanoseconds
    // ns * f / 1e9 without overflow for centuries of uptime.
    let ticks =
      (ns / 1_000_000_000) &* ACPIPowerManagement.timerFrequency
      &+ (ns % 1_000_000_000) &* ACPIPowerManagement.timerFrequency / 1_000_000_000
    return UInt32(truncatingIfNeeded: ticks)
  }

  /// Reads of any width at any offset see the little-endian register file.
  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    var v: UInt32 = 0
    for i in 0..<size { v |= UInt32(byte(at: offset &+ UInt16(i))) << (8 * UInt32(i)) }
    return v
  }

  private func byte(at o: UInt16) -> UInt8 {
    switch o {
    case 0, 1: return UInt8(truncatingIfNeeded: status >> (8 * (o & 1)))
    case 2, 3: return UInt8(truncatingIfNeeded: enable >> (8 * (o & 1)))
    case 4, 5: return UInt8(truncatingIfNeeded: pmControl >> (8 * (o & 1)))
    case 8...11: return UInt8(truncatingIfNeeded: timer >> (8 * UInt32(o - 8)))
    default: return 0xFF
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    for i in 0..<size {
      write(byte: UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))), at: offset &+ UInt16(i))
    }
    // A 16-bit PM1_CNT write is one request; act once both bytes are in.
    if offset <= 5 && offset &+ UInt16(size) > 5 || (offset == 4 && size == 1) {
      let slpEN: UInt16 = 1 << 13
      if pmControl & slpEN != 0 {
        pmControl &= ~slpEN
        let type = (pmControl >> 10) & 7
        if type == s5SleepType { control.requestStop(.powerOff) }
      }
    }
  }

  private func write(byte v: UInt8, at o: UInt16) {
    let shift = UInt16(8 * (o & 1))
    let mask: UInt16 = 0xFF << shift
    switch o {
    case 0, 1: status &= ~(UInt16(v) << shift)  // write 1 to clear
    case 2, 3: enable = (enable & ~mask) | UInt16(v) << shift
    case 4, 5: pmControl = ((pmControl & ~mask) | UInt16(v) << shift) | 1
    default: break
    }
  }
}
