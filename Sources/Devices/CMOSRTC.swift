/// MC146818-compatible CMOS real-time clock and NVRAM at ports 0x70 (index)
/// and 0x71 (data), interrupting on ISA IRQ8.
///
/// The date is the host's wall clock at VM start plus guest elapsed time, so
/// it follows guest time (deterministic under a `ManualClock`). Time
/// registers are computed on read in the format register B selects.
/// Periodic, alarm and update-ended flags are evaluated lazily and by
/// `poll(now:)`, which the VMM calls at `nextDeadline`.
public final class CMOSRTC: PortIODevice, TimedDevice {
  private let clock: GuestClock
  let irq: IRQLine?
  var cmos = [UInt8](repeating: 0, count: 128)
  var index = 0

  /// The time of day is `baseSeconds` at guest time `baseNanoseconds`.
  var baseSeconds: Int64
  var baseNanoseconds: UInt64
  /// Last whole second and periodic-tick index seen, for flag edges.
  var lastSecond: Int64
  var lastPeriodicIndex: UInt64 = 0

  static let divider = TickRate(hertz: 32768)

  private enum Reg {
    static let seconds = 0x00, secondsAlarm = 0x01, minutes = 0x02, minutesAlarm = 0x03
    static let hours = 0x04, hoursAlarm = 0x05, weekday = 0x06, day = 0x07, month = 0x08
    static let year = 0x09, a = 0x0A, b = 0x0B, c = 0x0C, d = 0x0D, century = 0x32
  }
  private enum B {
    static let set: UInt8 = 0x80, pie: UInt8 = 0x40, aie: UInt8 = 0x20, uie: UInt8 = 0x10
    static let binary: UInt8 = 0x04, hour24: UInt8 = 0x02
  }
  private enum C {
    static let irqf: UInt8 = 0x80, pf: UInt8 = 0x40, af: UInt8 = 0x20, uf: UInt8 = 0x10
  }

  /// - Parameters:
  ///   - startTime: wall-clock seconds since the Unix epoch at guest time 0 (UTC).
  ///   - memoryBelow4G, memoryAbove4G: guest RAM in bytes, reported as QEMU's BIOS does.
  ///   - cpuCount: reported at 0x5F.
  public init(
    clock: GuestClock, irq: IRQLine?, startTime: Int64 = hostWallClockSeconds(),
    memoryBelow4G: UInt64 = 0, memoryAbove4G: UInt64 = 0, cpuCount: Int = 1
  ) {
    self.clock = clock
    self.irq = irq
    let now = clock.nanoseconds
    baseNanoseconds = now
    baseSeconds = startTime
    lastSecond = startTime
    cmos[Reg.a] = 0x26  // 32.768 kHz divider, 1024 Hz periodic rate
    cmos[Reg.b] = B.hour24
    cmos[Reg.d] = 0x80  // valid RAM and time
    fillMemorySize(below4G: memoryBelow4G, above4G: memoryAbove4G)
    cmos[0x5F] = UInt8(truncatingIfNeeded: max(1, cpuCount) - 1)
    lastPeriodicIndex = periodicIndex(at: now)
  }

  public func register(on bus: PortIOBus, ports: ClosedRange<UInt16> = 0x70...0x71) throws {
    try bus.register(self, ports: ports, name: "CMOS RTC")
  }

  private func fillMemorySize(below4G: UInt64, above4G: UInt64) {
    func put16(_ at: Int, _ v: UInt64) {
      let c = min(v, 0xFFFF)
      cmos[at] = UInt8(c & 0xFF)
      cmos[at + 1] = UInt8(c >> 8)
    }
    put16(0x15, 640)  // base memory, KiB
    let extendedKiB = below4G > 0x10_0000 ? (below4G - 0x10_0000) / 1024 : 0
    put16(0x17, extendedKiB)
    put16(0x30, extendedKiB)
    put16(0x34, below4G > 0x100_0000 ? (below4G - 0x100_0000) >> 16 : 0)
    let high = min(above4G >> 16, 0xFF_FFFF)
    cmos[0x5B] = UInt8(high & 0xFF)
    cmos[0x5C] = UInt8((high >> 8) & 0xFF)
    cmos[0x5D] = UInt8(high >> 16)
    cmos[0x14] = 0x06  // equipment: FPU, PS/2 mouse
    // Standard checksum over 0x10-0x2D.
    let sum = cmos[0x10...0x2D].reduce(UInt16(0)) { $0 &+ UInt16($1) }
    cmos[0x2E] = UInt8(sum >> 8)
    cmos[0x2F] = UInt8(sum & 0xFF)
  }

  // MARK: Time

  private var setMode: Bool { cmos[Reg.b] & B.set != 0 }
  private var binaryMode: Bool { cmos[Reg.b] & B.binary != 0 }
  private var hour24: Bool { cmos[Reg.b] & B.hour24 != 0 }

  /// Whole seconds since the epoch and nanoseconds into the second at guest time `now`.
  private func wallTime(at now: UInt64) -> (seconds: Int64, fraction: UInt64) {
    let elapsed = now >= baseNanoseconds ? now - baseNanoseconds : 0
    return (baseSeconds &+ Int64(elapsed / 1_000_000_000), elapsed % 1_000_000_000)
  }

  private func encode(_ v: Int) -> UInt8 {
    let x = max(0, v) % 100
    return binaryMode ? UInt8(x) : UInt8((x / 10) << 4 | x % 10)
  }

  private func decode(_ v: UInt8) -> Int {
    binaryMode ? Int(v) : Int(v >> 4) * 10 + Int(v & 0x0F)
  }

  private func encodeHour(_ h: Int) -> UInt8 {
    if hour24 { return encode(h) }
    let h12 = h % 12 == 0 ? 12 : h % 12
    return encode(h12) | (h >= 12 ? 0x80 : 0)
  }

  private func decodeHour(_ v: UInt8) -> Int {
    if hour24 { return decode(v) }
    let h = decode(v & 0x7F) % 12
    return v & 0x80 != 0 ? h + 12 : h
  }

  /// Register values for the time registers at epoch second `s`.
  private func timeRegisters(_ s: Int64) -> [(Int, UInt8)] {
    let c = CivilTime(epochSeconds: s)
    return [
      (Reg.seconds, encode(c.second)), (Reg.minutes, encode(c.minute)),
      (Reg.hours, encodeHour(c.hour)), (Reg.weekday, encode(c.weekday)),
      (Reg.day, encode(c.day)), (Reg.month, encode(c.month)),
      (Reg.year, encode(c.year % 100)), (Reg.century, encode(c.year / 100)),
    ]
  }

  /// Copies the running time into the registers (entering SET mode, or before a write).
  private func snapshot(now: UInt64) {
    for (r, v) in timeRegisters(wallTime(at: now).seconds) { cmos[r] = v }
  }

  /// Makes the time in the registers current, starting a fresh second now.
  private func rebase(now: UInt64) {
    var century = decode(cmos[Reg.century])
    if century < 19 || century > 99 { century = 20 }
    let c = CivilTime(
      year: century * 100 + decode(cmos[Reg.year]) % 100, month: decode(cmos[Reg.month]),
      day: decode(cmos[Reg.day]), hour: decodeHour(cmos[Reg.hours]),
      minute: decode(cmos[Reg.minutes]), second: decode(cmos[Reg.seconds]))
    baseSeconds = c.epochSeconds
    baseNanoseconds = now
    lastSecond = baseSeconds
  }

  // MARK: Interrupts

  /// Periodic interrupt period in 32.768 kHz ticks, nil when off (RS = 0).
  private var periodicTicks: UInt64? {
    var rs = cmos[Reg.a] & 0x0F
    guard rs != 0 else { return nil }
    if rs <= 2 { rs += 7 }  // rates 1, 2 alias 8, 9 with a 32.768 kHz base
    return UInt64(1) << UInt64(rs - 1)
  }

  private func periodicIndex(at now: UInt64) -> UInt64 {
    guard let p = periodicTicks else { return 0 }
    return CMOSRTC.divider.ticks(in: now) / p
  }

  private func alarmMatches(_ s: Int64) -> Bool {
    let regs = timeRegisters(s)
    for (alarm, time) in [(Reg.secondsAlarm, 0), (Reg.minutesAlarm, 1), (Reg.hoursAlarm, 2)] {
      let a = cmos[alarm]
      if a & 0xC0 == 0xC0 { continue }  // don't care
      if a != regs[time].1 { return false }
    }
    return true
  }

  /// Sets the flags for every event up to `now` and drives IRQ8.
  private func update(now: UInt64) {
    var c = cmos[Reg.c]
    if periodicTicks != nil {
      let i = periodicIndex(at: now)
      if i > lastPeriodicIndex { c |= C.pf }
      lastPeriodicIndex = i
    }
    if !setMode {
      let s = wallTime(at: now).seconds
      if s > lastSecond {
        c |= C.uf
        // Only the latest second is compared; with AIE on, poll() visits each one.
        if alarmMatches(s) { c |= C.af }
      }
      lastSecond = s
    }
    let enabled = cmos[Reg.b] & (B.pie | B.aie | B.uie)
    if c & 0x70 & enabled != 0 { c |= C.irqf }  // flags and enables share bit positions
    cmos[Reg.c] = c
    irq?.set(c & C.irqf != 0)
  }

  public var nextDeadline: UInt64? {
    let b = cmos[Reg.b]
    // No interrupt enabled (the usual case under Linux): no clock read, which the VMM
    // would otherwise pay at every exit.
    guard b & (B.pie | B.aie | B.uie) != 0 else { return nil }
    let now = clock.nanoseconds
    var best: UInt64?
    if b & B.pie != 0, let p = periodicTicks {
      let tick = (CMOSRTC.divider.ticks(in: now) / p &+ 1) &* p
      best = CMOSRTC.divider.nanoseconds(for: tick)
    }
    if b & (B.aie | B.uie) != 0 && !setMode {
      let elapsed = now >= baseNanoseconds ? now - baseNanoseconds : 0
      let next = baseNanoseconds &+ (elapsed / 1_000_000_000 &+ 1) &* 1_000_000_000
      best = min(best ?? next, next)
    }
    return best
  }

  public func poll(now: UInt64) { update(now: now) }

  // MARK: Ports

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    guard offset == 1 else { return 0xFF }  // the index port is write-only
    let now = clock.nanoseconds
    switch index {
    case Reg.seconds, Reg.minutes, Reg.hours, Reg.weekday, Reg.day, Reg.month, Reg.year,
      Reg.century:
      if setMode { return UInt32(cmos[index]) }
      let regs = timeRegisters(wallTime(at: now).seconds)
      return UInt32(regs.first { $0.0 == index }?.1 ?? 0)
    case Reg.a:
      var a = cmos[Reg.a] & 0x7F
      // UIP: set for the 244 µs before each update.
      if !setMode && wallTime(at: now).fraction >= 1_000_000_000 - 244_000 { a |= 0x80 }
      return UInt32(a)
    case Reg.c:
      update(now: now)
      let c = cmos[Reg.c]
      cmos[Reg.c] = 0
      irq?.set(false)
      return UInt32(c)
    default:
      return UInt32(cmos[index])
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    let v = UInt8(truncatingIfNeeded: value)
    guard offset == 1 else {
      if offset == 0 { index = Int(v & 0x7F) }  // bit 7 masks NMI: ignored
      return
    }
    let now = clock.nanoseconds
    switch index {
    case Reg.seconds, Reg.minutes, Reg.hours, Reg.weekday, Reg.day, Reg.month, Reg.year,
      Reg.century:
      if setMode {
        cmos[index] = v
      } else {
        snapshot(now: now)
        cmos[index] = v
        rebase(now: now)
      }
    case Reg.a:
      update(now: now)
      cmos[Reg.a] = v & 0x7F
      lastPeriodicIndex = periodicIndex(at: now)
    case Reg.b:
      update(now: now)
      let wasSet = setMode
      var nv = v
      if nv & B.set != 0 {
        nv &= ~B.uie  // SET clears UIE
        if !wasSet { snapshot(now: now) }
      }
      cmos[Reg.b] = nv
      if wasSet && nv & B.set == 0 { rebase(now: now) }
      update(now: now)
    case Reg.c, Reg.d:
      break  // read-only
    default:
      cmos[index] = v
    }
  }
}

/// Proleptic Gregorian date and time in UTC, from and to Unix seconds.
struct CivilTime: Equatable {
  var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int
  /// 1 = Sunday ... 7 = Saturday, as the RTC counts.
  var weekday: Int

  init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
    self.year = year
    self.month = month
    self.day = day
    self.hour = hour
    self.minute = minute
    self.second = second
    weekday = 0
    weekday = CivilTime(epochSeconds: epochSeconds).weekday
  }

  init(epochSeconds t: Int64) {
    // Clamp so the arithmetic below cannot overflow for any input.
    let s = min(max(t, -(Int64(1) << 50)), Int64(1) << 50)
    var days = s / 86400
    var rem = s % 86400
    if rem < 0 {
      rem += 86400
      days -= 1
    }
    hour = Int(rem / 3600)
    minute = Int(rem % 3600 / 60)
    second = Int(rem % 60)
    weekday = Int(((days % 7) + 11) % 7) + 1  // 1970-01-01 was a Thursday
    // Days to civil date (era-based algorithm).
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    day = Int(doy - (153 * mp + 2) / 5 + 1)
    month = Int(mp < 10 ? mp + 3 : mp - 9)
    year = Int(yoe + era * 400 + (month <= 2 ? 1 : 0))
  }

  /// Out-of-range fields (from guest-written registers) roll over rather than trap.
  var epochSeconds: Int64 {
    let mo = Int64(min(max(month, 1), 12))
    let y = Int64(min(max(year, 0), 9999)) - (mo <= 2 ? 1 : 0)
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (mo + 9) % 12
    let doy = (153 * mp + 2) / 5 + Int64(min(max(day, 1), 31)) - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    return days * 86400 + Int64(min(max(hour, 0), 23)) * 3600
      + Int64(min(max(minute, 0), 59)) * 60 + Int64(min(max(second, 0), 59))
  }
}
