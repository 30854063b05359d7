import Memory
import X86

/// kvm-clock, the paravirtual clock KVM offers and Linux already speaks:
/// the guest hands us guest-physical addresses through two MSRs and we keep
/// version-protected pvclock structures there. Guest time is a linear
/// function of the TSC, so one write of the structure stays valid until the
/// guest moves it or the TSC is written.
final class KVMClock {
  private let memory: GuestMemory
  private let tscFrequency: UInt64
  /// Guest nanoseconds since boot at a TSC value (the TSC-to-time line).
  private let nanosecondsAtTSC: (UInt64) -> UInt64
  private let readTSC: () -> UInt64
  /// Host wall-clock time at guest time 0, for MSR_KVM_WALL_CLOCK_NEW.
  private let bootWallNanoseconds: UInt64

  var systemTimeMSR: UInt64 = 0
  var version: UInt32 = 0

  static let tscStableBit: UInt8 = 1 << 0

  init(
    memory: GuestMemory, tscFrequency: UInt64, bootWallNanoseconds: UInt64,
    readTSC: @escaping () -> UInt64, nanosecondsAtTSC: @escaping (UInt64) -> UInt64
  ) {
    self.memory = memory
    self.tscFrequency = tscFrequency
    self.bootWallNanoseconds = bootWallNanoseconds
    self.readTSC = readTSC
    self.nanosecondsAtTSC = nanosecondsAtTSC
  }

  /// (mul, shift) with ns = ((tsc shifted by shift) * mul) >> 32, as pvclock defines it:
  /// the shifted rate lies in (1 GHz, 2 GHz], so mul fits 32 bits with full precision.
  static func scale(tscFrequency: UInt64) -> (mul: UInt32, shift: Int8) {
    let ghz: UInt64 = 1_000_000_000
    var shift: Int8 = 0
    var rate = max(tscFrequency, 1)
    while rate > 2 * ghz {
      rate >>= 1
      shift -= 1
    }
    while rate <= ghz {
      rate <<= 1
      shift += 1
    }
    return (UInt32(truncatingIfNeeded: (ghz << 32) / rate), shift)
  }

  /// MSR_KVM_WALL_CLOCK_NEW: write {version, sec, nsec} of boot time at `value`.
  func writeWallClock(_ value: UInt64) -> Bool {
    let gpa = GuestPhysicalAddress(value)
    guard memory.isRAM(gpa, length: 12) else { return false }
    let sec = UInt32(truncatingIfNeeded: bootWallNanoseconds / 1_000_000_000)
    let nsec = UInt32(bootWallNanoseconds % 1_000_000_000)
    try? memory.write(gpa, value: UInt32(1))  // odd: update in progress
    try? memory.write(gpa + 4, value: sec)
    try? memory.write(gpa + 8, value: nsec)
    try? memory.write(gpa, value: UInt32(2))
    return true
  }

  /// MSR_KVM_SYSTEM_TIME_NEW: bit 0 enables, the rest is the 32-byte-aligned GPA.
  func writeSystemTime(_ value: UInt64) -> Bool {
    systemTimeMSR = value
    guard value & 1 != 0 else { return true }
    return publish()
  }

  /// Rewrites the pvclock structure (after enabling, or after a TSC write).
  @discardableResult
  func publish() -> Bool {
    guard systemTimeMSR & 1 != 0 else { return true }
    let gpa = GuestPhysicalAddress(systemTimeMSR & ~0x1F)
    guard memory.isRAM(gpa, length: 32) else { return false }
    let tsc = readTSC()
    let (mul, shift) = KVMClock.scale(tscFrequency: tscFrequency)
    version &+= 1
    if version & 1 == 0 { version &+= 1 }
    try? memory.write(gpa, value: version)  // odd while writing
    try? memory.write(gpa + 8, value: tsc)  // tsc_timestamp
    try? memory.write(gpa + 16, value: nanosecondsAtTSC(tsc))  // system_time
    try? memory.write(gpa + 24, value: mul)  // tsc_to_system_mul
    try? memory.write(gpa + 28, value: UInt8(bitPattern: shift))  // tsc_shift
    try? memory.write(gpa + 29, value: KVMClock.tscStableBit)  // flags
    version &+= 1
    try? memory.write(gpa, value: version)
    return true
  }
}
