import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Guest time in nanoseconds since the VM started. Devices read "now" from it;
/// it never runs backwards.
///
/// Two sources: `HostMonotonicClock` (interactive: guest time follows the
/// host's wall time) and `ManualClock` (deterministic: the VMM advances it,
/// typically from the retired-instruction count, so two runs see the same times).
public protocol GuestClock: AnyObject {
  var nanoseconds: UInt64 { get }
}

/// A device with timers. Devices never sleep or spawn threads: the VMM's run
/// loop asks for the earliest deadline and calls `poll(now:)` once it has passed.
public protocol TimedDevice: AnyObject {
  /// Guest time (ns) at which the device next has something to do, or nil.
  var nextDeadline: UInt64? { get }
  /// Fires everything due at or before `now` (raises IRQ lines).
  func poll(now: UInt64)
}

/// CLOCK_MONOTONIC relative to the moment the clock was created.
/// Read from the vCPU thread and the timer thread at once: the high-water mark is atomic.
public final class HostMonotonicClock: GuestClock {
  private var start: UInt64
  private let last = Atomic<UInt64>(0)

  public init() { start = HostMonotonicClock.raw() }

  /// Continues guest time from `ns` (a restored snapshot): the time the VM spent
  /// saved on disk does not pass for the guest. Call before the vCPU runs.
  public func resume(at ns: UInt64) {
    start = HostMonotonicClock.raw() &- ns
    last.store(ns, ordering: .relaxed)
  }

  /// The absolute CLOCK_MONOTONIC time at which this clock reads `ns`: where
  /// the host event loop arms its timerfd for a guest deadline.
  public func monotonicNanoseconds(atGuest ns: UInt64) -> UInt64 { start &+ ns }

  static func raw() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
  }

  public var nanoseconds: UInt64 {
    // CLOCK_MONOTONIC does not go back, but keep the guarantee local too.
    let now = HostMonotonicClock.raw() &- start
    var seen = last.load(ordering: .relaxed)
    while now > seen {
      let (done, current) = last.compareExchange(
        expected: seen, desired: now, ordering: .relaxed)
      if done { return now }
      seen = current
    }
    return seen
  }
}

/// A clock the VMM moves forward explicitly, for deterministic runs.
/// `advance(instructions:)` gives instruction-count time at a fixed rate.
public final class ManualClock: GuestClock {
  public private(set) var nanoseconds: UInt64
  /// Guest nanoseconds per 1024 retired instructions (default: 1 ns per instruction).
  public let nanosecondsPer1024Instructions: UInt64
  private var instructionRemainder: UInt64 = 0

  public init(start: UInt64 = 0, nanosecondsPer1024Instructions: UInt64 = 1024) {
    self.nanoseconds = start
    self.nanosecondsPer1024Instructions = nanosecondsPer1024Instructions
  }

  /// Moves to `ns`; earlier values are ignored so time never goes backwards.
  public func set(to ns: UInt64) {
    if ns > nanoseconds { nanoseconds = ns }
  }

  public func advance(by ns: UInt64) {
    nanoseconds = nanoseconds &+ ns
  }

  /// Adds the time `count` retired instructions take at the configured rate.
  public func advance(instructions count: UInt64) {
    let (hi, lo) = count.multipliedFullWidth(by: nanosecondsPer1024Instructions)
    // Remainder carried so small steps add up exactly.
    let total = lo &+ instructionRemainder
    let carry: UInt64 = total < lo ? 1 : 0
    let wide = (high: hi &+ carry, low: total)
    nanoseconds = nanoseconds &+ ((wide.high << 54) | (wide.low >> 10))
    instructionRemainder = wide.low & 1023
  }
}

/// The host's wall clock, in seconds since the Unix epoch (for the RTC's start date).
public func hostWallClockSeconds() -> Int64 {
  var ts = timespec()
  clock_gettime(CLOCK_REALTIME, &ts)
  return Int64(ts.tv_sec)
}

/// Conversion between guest nanoseconds and a fixed-frequency tick count
/// (PIT input clock, TSC), exact in 128-bit arithmetic.
public struct TickRate: Equatable, Sendable {
  public let hertz: UInt64

  public init(hertz: UInt64) { self.hertz = max(1, hertz) }

  /// Whole ticks elapsed in `ns` nanoseconds (rounded down).
  public func ticks(in ns: UInt64) -> UInt64 {
    TickRate.mulDiv(ns, hertz, 1_000_000_000, roundUp: false)
  }

  /// Nanoseconds until `ticks` ticks have elapsed (rounded up, so a deadline
  /// computed from it has always been reached).
  public func nanoseconds(for ticks: UInt64) -> UInt64 {
    TickRate.mulDiv(ticks, 1_000_000_000, hertz, roundUp: true)
  }

  /// a*b/c without overflow; saturates at UInt64.max.
  static func mulDiv(_ a: UInt64, _ b: UInt64, _ c: UInt64, roundUp: Bool) -> UInt64 {
    let p = a.multipliedFullWidth(by: b)
    guard p.high < c else { return UInt64.max }
    let (q, r) = c.dividingFullWidth(p)
    if roundUp && r != 0 { return q == UInt64.max ? q : q + 1 }
    return q
  }
}

/// The guest's time-stamp counter: constant rate, derived from the guest
/// clock, so it never runs backwards unless the guest writes it (MSR 0x10).
/// The interpreter answers RDTSC/RDTSCP from `read()`; the LAPIC's
/// TSC-deadline timer converts deadlines with `nanoseconds(atTSC:)`.
public final class GuestTSC {
  public let rate: TickRate
  private let clock: GuestClock
  /// Guest TSC minus ticks elapsed since guest time 0 (wrapping).
  public internal(set) var offset: UInt64 = 0

  public init(clock: GuestClock, frequency: UInt64) {
    self.clock = clock
    rate = TickRate(hertz: frequency)
  }

  public var frequency: UInt64 { rate.hertz }

  public func read() -> UInt64 { rate.ticks(in: clock.nanoseconds) &+ offset }

  /// WRMSR IA32_TIME_STAMP_COUNTER: the counter continues from `value`.
  public func write(_ value: UInt64) {
    offset = value &- rate.ticks(in: clock.nanoseconds)
  }

  /// Guest time (ns) at which the TSC reaches `value`; 0 if it already has.
  public func nanoseconds(atTSC value: UInt64) -> UInt64 {
    // Compare in the unwrapped tick domain: values below the offset are past.
    let now = read()
    guard value > now else { return 0 }
    return rate.nanoseconds(for: rate.ticks(in: clock.nanoseconds) &+ (value &- now))
  }
}
