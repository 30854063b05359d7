/// Intel 8254 programmable interval timer at 0x40-0x43, plus the bits of
/// System Control Port B (0x61) that belong to it: channel 2's gate (bit 0)
/// and output (bit 5), which Linux's PIT calibration polls.
///
/// Counting is derived from the guest clock, never simulated tick by tick:
/// each channel remembers the input-clock tick at which it started. Channel 0
/// pulses IRQ0 at every rising edge of its output; the VMM calls `poll(now:)`
/// once `nextDeadline` has passed.
public final class PIT8254: PortIODevice, TimedDevice {
  public static let rate = TickRate(hertz: 1_193_182)

  private let clock: GuestClock
  private let irq0: IRQLine?
  var channels = [PITChannel](repeating: PITChannel(), count: 3)
  /// Port 0x61 bits 1-3 (speaker data, parity/channel-check enables): stored only.
  var port61Bits: UInt8 = 0
  /// Absolute tick of channel 0's next output rising edge.
  var nextIRQTick: UInt64?

  public init(clock: GuestClock, irq0: IRQLine?) {
    self.clock = clock
    self.irq0 = irq0
    channels[0].gate = true
    channels[1].gate = true
  }

  /// Registers 0x40-0x43 and 0x61 (seen as offset 0x21).
  public func register(on bus: PortIOBus) throws {
    try bus.register(self, ports: 0x40...0x43, name: "i8254 PIT")
    try bus.register(self, ports: 0x61...0x61, name: "system control port B", firstOffset: 0x21)
  }

  private var nowTick: UInt64 { PIT8254.rate.ticks(in: clock.nanoseconds) }

  // MARK: Timer interface

  public var nextDeadline: UInt64? {
    nextIRQTick.map { PIT8254.rate.nanoseconds(for: $0) }
  }

  public func poll(now: UInt64) {
    guard let due = nextIRQTick else { return }
    let tick = PIT8254.rate.ticks(in: now)
    guard tick >= due else { return }
    // Edges that passed unseen coalesce into one, like a request already in IRR.
    irq0?.set(true)
    irq0?.set(false)
    nextIRQTick = channels[0].nextRisingEdge(after: tick)
  }

  /// Channel 2's output (port 0x61 bit 5).
  public var channel2Output: Bool { channels[2].output(at: nowTick) }

  /// Channel 2's gate (port 0x61 bit 0).
  public var channel2Gate: Bool {
    get { channels[2].gate }
    set { channels[2].setGate(newValue, at: nowTick) }
  }

  // MARK: Ports

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    switch offset {
    case 0...2: return UInt32(channels[Int(offset)].read(at: nowTick))
    case 0x21:
      let ns = clock.nanoseconds
      var v = port61Bits & 0x0E
      if channels[2].gate { v |= 0x01 }
      // Refresh request toggles every 15.085 µs; old BIOS-style delays count it.
      if (ns / 15_085) & 1 != 0 { v |= 0x10 }
      if channels[2].output(at: PIT8254.rate.ticks(in: ns)) { v |= 0x20 }
      return UInt32(v)
    default: return 0xFF  // the control word register is write-only
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    let v = UInt8(truncatingIfNeeded: value)
    let tick = nowTick
    switch offset {
    case 0...2:
      channels[Int(offset)].writeCount(v, at: tick)
    case 3:
      let select = Int(v >> 6)
      if select == 3 {
        // Read-back: bit 5 clear latches counts, bit 4 clear latches status.
        for i in 0..<3 where v & (UInt8(2) << UInt8(i)) != 0 {
          if v & 0x20 == 0 { channels[i].latchCount(at: tick) }
          if v & 0x10 == 0 { channels[i].latchStatus(at: tick) }
        }
        return
      }
      if (v >> 4) & 3 == 0 {
        channels[select].latchCount(at: tick)
        return
      }
      channels[select].writeControl(v)
    case 0x21:
      port61Bits = v & 0x0E
      channels[2].setGate(v & 0x01 != 0, at: tick)
    default: return
    }
    if offset == 0 || (offset == 3 && v >> 6 == 0) {
      nextIRQTick = channels[0].nextRisingEdge(after: tick)
    }
  }
}

/// One 8254 counter.
struct PITChannel: Codable, Equatable {
  var mode: UInt8 = 0
  /// Read/write access: 1 LSB only, 2 MSB only, 3 LSB then MSB.
  var access: UInt8 = 3
  var bcd = false
  /// Initial count in counting units (1...65536, or 1...10000 in BCD).
  var count: UInt64 = 0x10000
  /// Absolute input-clock tick at which counting began; nil while waiting
  /// for a count or a gate trigger.
  var startTick: UInt64?
  /// Ticks counted before the gate went low (modes 0 and 4 suspend counting).
  var suspendedElapsed: UInt64?
  var gate = false
  var nullCount = true

  private var writeMSBNext = false
  private var pendingLSB: UInt8 = 0
  private var readMSBNext = false
  private var latchedCount: UInt16?
  private var latchedReadMSBNext = false
  private var latchedStatus: UInt8?

  private var modulus: UInt64 { bcd ? 10000 : 0x10000 }

  /// Ticks counted so far, if counting.
  func elapsed(at tick: UInt64) -> UInt64? {
    if let s = suspendedElapsed { return s }
    guard let start = startTick else { return nil }
    return tick >= start ? tick - start : 0
  }

  func output(at tick: UInt64) -> Bool {
    guard let d = elapsed(at: tick) else {
      // Idle: mode 0 holds OUT low from the control word on, the others high.
      return mode != 0
    }
    let c = count
    switch mode {
    case 0, 1: return d >= c
    case 2: return c <= 1 || d % c != c - 1
    case 3: return d % c < (c + 1) / 2
    default: return d != c  // 4, 5: one low clock at terminal count
    }
  }

  /// Current counter value in counting units.
  func value(at tick: UInt64) -> UInt64 {
    guard let d = elapsed(at: tick) else { return count % modulus }
    let c = count
    switch mode {
    case 2: return c - d % c
    case 3: return c - (d &* 2) % c
    default:
      // After terminal count the counter wraps and keeps counting down.
      let m = modulus
      return (c % m + m - d % m) % m
    }
  }

  /// Tick of the first output rising edge strictly after `tick`, if any.
  func nextRisingEdge(after tick: UInt64) -> UInt64? {
    guard suspendedElapsed == nil, let start = startTick else { return nil }
    let c = count
    let d = tick >= start ? tick - start : 0
    switch mode {
    case 0, 1: return c > d ? start &+ c : nil
    case 2, 3: return start &+ (d / c + 1) &* c
    default: return c + 1 > d ? start &+ c &+ 1 : nil
    }
  }

  private func encode(_ v: UInt64) -> UInt16 {
    guard bcd else { return UInt16(truncatingIfNeeded: v) }
    var x = v % 10000
    var out: UInt16 = 0
    for shift in stride(from: 0, to: 16, by: 4) {
      out |= UInt16(x % 10) << UInt16(shift)
      x /= 10
    }
    return out
  }

  private func decode(_ v: UInt16) -> UInt64 {
    guard bcd else { return v == 0 ? 0x10000 : UInt64(v) }
    var result: UInt64 = 0
    for shift in stride(from: 12, through: 0, by: -4) {
      result = result * 10 + UInt64(min((v >> UInt16(shift)) & 0xF, 9))
    }
    return result == 0 ? 10000 : result
  }

  mutating func writeControl(_ v: UInt8) {
    access = (v >> 4) & 3
    var m = (v >> 1) & 7
    if m > 5 { m -= 4 }  // 6 and 7 alias modes 2 and 3
    mode = m
    bcd = v & 1 != 0
    startTick = nil
    suspendedElapsed = nil
    nullCount = true
    writeMSBNext = false
    readMSBNext = false
    latchedCount = nil
    latchedStatus = nil
  }

  mutating func writeCount(_ v: UInt8, at tick: UInt64) {
    let raw: UInt16
    switch access {
    case 1: raw = UInt16(v)
    case 2: raw = UInt16(v) << 8
    default:
      if !writeMSBNext {
        pendingLSB = v
        writeMSBNext = true
        return
      }
      writeMSBNext = false
      raw = UInt16(pendingLSB) | UInt16(v) << 8
    }
    count = decode(raw)
    nullCount = false
    suspendedElapsed = nil
    switch mode {
    case 1, 5:
      startTick = nil  // waits for a gate rising edge
    default:
      if gate {
        startTick = tick
      } else if mode == 0 || mode == 4 {
        startTick = tick
        suspendedElapsed = 0
      } else {
        startTick = nil  // modes 2, 3 start on the gate's rising edge
      }
    }
  }

  mutating func setGate(_ high: Bool, at tick: UInt64) {
    defer { gate = high }
    guard high != gate else { return }
    switch mode {
    case 0, 4:
      if high, let s = suspendedElapsed {
        startTick = tick &- s
        suspendedElapsed = nil
      } else if !high, let d = elapsed(at: tick) {
        suspendedElapsed = d
      }
    default:
      // Modes 1, 5 trigger and modes 2, 3 reload on a rising edge;
      // a low gate stops modes 2 and 3 with OUT high.
      if high {
        if !nullCount { startTick = tick }
      } else if mode == 2 || mode == 3 {
        startTick = nil
      }
    }
  }

  mutating func latchCount(at tick: UInt64) {
    guard latchedCount == nil else { return }
    latchedCount = encode(value(at: tick))
    latchedReadMSBNext = false
  }

  mutating func latchStatus(at tick: UInt64) {
    guard latchedStatus == nil else { return }
    var s = access << 4 | mode << 1 | (bcd ? 1 : 0)
    if output(at: tick) { s |= 0x80 }
    if nullCount { s |= 0x40 }
    latchedStatus = s
  }

  mutating func read(at tick: UInt64) -> UInt8 {
    if let s = latchedStatus {
      latchedStatus = nil
      return s
    }
    if let l = latchedCount {
      switch access {
      case 1:
        latchedCount = nil
        return UInt8(truncatingIfNeeded: l)
      case 2:
        latchedCount = nil
        return UInt8(truncatingIfNeeded: l >> 8)
      default:
        if latchedReadMSBNext {
          latchedCount = nil
          return UInt8(truncatingIfNeeded: l >> 8)
        }
        latchedReadMSBNext = true
        return UInt8(truncatingIfNeeded: l)
      }
    }
    let v = encode(value(at: tick))
    switch access {
    case 1: return UInt8(truncatingIfNeeded: v)
    case 2: return UInt8(truncatingIfNeeded: v >> 8)
    default:
      readMSBNext.toggle()
      return UInt8(truncatingIfNeeded: readMSBNext ? v : v >> 8)
    }
  }
}
