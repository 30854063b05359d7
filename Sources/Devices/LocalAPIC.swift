import X86

/// 256 bits, one per interrupt vector (IRR, ISR, TMR).
public struct VectorBitmap: Equatable, Sendable {
  var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

  public init() {}

  public static func == (a: VectorBitmap, b: VectorBitmap) -> Bool {
    a.words == b.words
  }

  public var isEmpty: Bool { words == (0, 0, 0, 0) }

  public subscript(vector: UInt8) -> Bool {
    get { word(Int(vector >> 6)) & (1 << UInt64(vector & 63)) != 0 }
    set {
      let i = Int(vector >> 6)
      let bit = UInt64(1) << UInt64(vector & 63)
      setWord(i, newValue ? word(i) | bit : word(i) & ~bit)
    }
  }

  func word(_ i: Int) -> UInt64 {
    switch i {
    case 0: return words.0
    case 1: return words.1
    case 2: return words.2
    default: return words.3
    }
  }

  mutating func setWord(_ i: Int, _ v: UInt64) {
    switch i {
    case 0: words.0 = v
    case 1: words.1 = v
    case 2: words.2 = v
    default: words.3 = v
    }
  }

  /// The highest set vector, if any.
  public var highest: UInt8? {
    for i in stride(from: 3, through: 0, by: -1) {
      let w = word(i)
      if w != 0 { return UInt8(i * 64 + 63 - w.leadingZeroBitCount) }
    }
    return nil
  }

  /// The 32 bits an APIC register at index 0...7 shows.
  func register(_ index: Int) -> UInt32 {
    UInt32(truncatingIfNeeded: word(index >> 1) >> UInt64((index & 1) * 32))
  }
}

/// An inter-processor interrupt the guest sent through the ICR; `APICBus` routes it.
public struct InterprocessorInterrupt: Equatable, Sendable {
  public enum Shorthand: UInt8, Sendable {
    case none = 0, selfOnly, allIncludingSelf, allExcludingSelf
  }
  /// ICR bits 10:8: 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 6 start-up.
  public var deliveryMode: UInt8
  public var vector: UInt8
  public var logicalDestination: Bool
  public var level: Bool
  public var levelTriggered: Bool
  public var shorthand: Shorthand
  /// ICR high bits 31:24.
  public var destination: UInt8
}

/// A local APIC in xAPIC mode (MMIO page at 0xFEE00000), version 0x14 with
/// six LVT entries like QEMU's. One per vCPU; the VMM routes MSRs 0x1B
/// (`apicBase`) and 0x6E0 (`writeTSCDeadline`/`readTSCDeadline`) to it.
///
/// The timer counts at `timerFrequency` (1 GHz by default, as QEMU and KVM)
/// divided by the divide configuration; TSC-deadline mode compares against `tsc`.
public final class LocalAPIC: MMIODevice, TimedDevice {
  public static let defaultBase: UInt64 = 0xFEE0_0000
  public static let size: UInt64 = 0x1000

  private let clock: GuestClock
  public let tsc: GuestTSC
  public let timerRate: TickRate

  /// Called on EOI of a level-triggered vector (TMR set): the IOAPIC clears remote IRR.
  public var onLevelTriggeredEOI: ((UInt8) -> Void)?

  /// The wires to the other APICs (set by `APICBus.init`); an APIC on no bus
  /// sends IPIs nowhere.
  weak var bus: APICBus?
  /// This APIC's index on `bus` (the vCPU index).
  var busIndex = 0
  /// An NMI sent to this CPU, latched until the CPU takes it (NMIs do not queue).
  public internal(set) var nmiPending = false

  public internal(set) var apicBase: UInt64

  var id: UInt32
  /// The APIC ID at power-up, which a global disable brings back.
  let powerUpID: UInt32
  var tpr: UInt32 = 0
  var ldr: UInt32 = 0
  var dfr: UInt32 = 0xFFFF_FFFF
  var svr: UInt32 = 0xFF
  public internal(set) var irr = VectorBitmap()
  public internal(set) var isr = VectorBitmap()
  public internal(set) var tmr = VectorBitmap()
  var esr: UInt32 = 0
  var esrPending: UInt32 = 0
  var icrLow: UInt32 = 0
  var icrHigh: UInt32 = 0
  /// Timer, thermal, performance, LINT0, LINT1, error.
  var lvt: [UInt32] = [0x10000, 0x10000, 0x10000, 0x10000, 0x10000, 0x10000]
  var divideConfig: UInt32 = 0
  var initialCount: UInt32 = 0
  /// Guest ns at which the count timer (re)started, nil when stopped.
  var timerStart: UInt64?
  /// Armed TSC deadline (TSC ticks), 0 when disarmed.
  var tscDeadline: UInt64 = 0
  /// Next ns at which the timer fires.
  var timerDeadline: UInt64?

  private enum LVT {
    static let timer = 0, thermal = 1, perf = 2, lint0 = 3, lint1 = 4, error = 5
    static let masked: UInt32 = 1 << 16
  }
  static let softwareEnable: UInt32 = 1 << 8
  static let globalEnable: UInt64 = 1 << 11
  static let bsp: UInt64 = 1 << 8

  /// - Parameters:
  ///   - tsc: the CPU's time-stamp counter, for TSC-deadline mode.
  ///   - isBSP: the bootstrap CPU starts with LINT0 in ExtINT (virtual wire), as QEMU's.
  public init(
    clock: GuestClock, tsc: GuestTSC, id: UInt8 = 0, isBSP: Bool = true,
    timerFrequency: UInt64 = 1_000_000_000
  ) {
    self.clock = clock
    self.tsc = tsc
    timerRate = TickRate(hertz: timerFrequency)
    self.id = UInt32(id) << 24
    powerUpID = UInt32(id) << 24
    apicBase = LocalAPIC.defaultBase | LocalAPIC.globalEnable | (isBSP ? LocalAPIC.bsp : 0)
    if isBSP { lvt[LVT.lint0] = 0x700 }
  }

  /// With a TSC of its own at `tscFrequency` Hz (tests, single-CPU setups).
  public convenience init(
    clock: GuestClock, tscFrequency: UInt64, id: UInt8 = 0, isBSP: Bool = true
  ) {
    self.init(
      clock: clock, tsc: GuestTSC(clock: clock, frequency: tscFrequency), id: id, isBSP: isBSP)
  }

  public func register(on bus: MMIOBus) throws {
    try bus.register(
      self, base: apicBase & 0xF_FFFF_F000, size: LocalAPIC.size, name: "local APIC")
  }

  public var apicID: UInt8 { UInt8(truncatingIfNeeded: id >> 24) }
  /// The physical address of this APIC's register page (IA32_APIC_BASE bits 35:12).
  public var page: UInt64 { apicBase & 0xF_FFFF_F000 }
  public var isGloballyEnabled: Bool { apicBase & LocalAPIC.globalEnable != 0 }
  public var isSoftwareEnabled: Bool { svr & LocalAPIC.softwareEnable != 0 }

  /// IA32_APIC_BASE writes. Returns false (the CPU raises #GP) for x2APIC
  /// mode (bit 10), which is not offered, and for reserved bits. Clearing the
  /// global enable also software-disables the APIC, as QEMU does; setting it
  /// again restores the power-up APIC ID, as KVM does (SDM Vol. 3A 11.4.3: the
  /// APIC's state may be lost; kvm-unit-tests' apic checks the ID after it).
  public func writeAPICBase(_ value: UInt64) -> Bool {
    guard value & ~MSR.apicBaseWritable == 0 else { return false }
    let wasEnabled = isGloballyEnabled
    let oldPage = page
    apicBase = value & (0xF_FFFF_F000 | LocalAPIC.globalEnable) | (apicBase & LocalAPIC.bsp)
    if page != oldPage { bus?.apicBaseChanged() }
    if !wasEnabled && isGloballyEnabled { id = powerUpID }
    if !isGloballyEnabled { setSVR(svr & ~LocalAPIC.softwareEnable) }
    return true
  }

  // MARK: Interrupt acceptance

  /// Processor priority: the higher class of TPR and the highest vector in service.
  public var ppr: UInt32 {
    let isrv = UInt32(isr.highest ?? 0)
    return (tpr & 0xF0) >= (isrv & 0xF0) ? tpr & 0xFF : isrv & 0xF0
  }

  /// Accepts a fixed interrupt from the IOAPIC, an IPI or a local source.
  public func deliver(vector: UInt8, levelTriggered: Bool) {
    guard vector >= 16 else {
      esrPending |= 1 << 6  // received illegal vector
      return
    }
    irr[vector] = true
    tmr[vector] = levelTriggered
  }

  /// True when the CPU should take an interrupt from this APIC.
  public var hasPendingInterrupt: Bool {
    guard isSoftwareEnabled, isGloballyEnabled, let v = irr.highest else { return false }
    return UInt32(v) & 0xF0 > ppr & 0xF0
  }

  /// INTA: moves the highest deliverable vector into service. Returns the
  /// spurious vector when nothing is deliverable (the request was withdrawn).
  public func acknowledge() -> UInt8 {
    guard hasPendingInterrupt, let v = irr.highest else {
      return UInt8(truncatingIfNeeded: svr)
    }
    irr[v] = false
    isr[v] = true
    return v
  }

  /// Whether the 8259's INTR reaches the CPU: APIC globally off, or LINT0
  /// unmasked in ExtINT mode (virtual wire), as QEMU's apic_accept_pic_intr.
  public var acceptsPICInterrupts: Bool {
    if !isGloballyEnabled { return true }
    let l = lvt[LVT.lint0]
    return l & LVT.masked == 0 && (l >> 8) & 7 == 7
  }

  /// Destination check for interrupts from the IOAPIC (and IPIs).
  public func matches(destination: UInt8, logical: Bool) -> Bool {
    if destination == 0xFF { return true }
    guard logical else { return UInt32(destination) == id >> 24 }
    let mine = UInt8(truncatingIfNeeded: ldr >> 24)
    if dfr >> 28 == 0xF { return mine & destination != 0 }  // flat
    // Cluster model: high nibble selects the cluster, low nibble the members.
    return mine >> 4 == destination >> 4 && mine & destination & 0x0F != 0
  }

  /// TMR keeps the trigger mode of the last acceptance: EOI leaves it set
  /// (SDM 10.8.4; kvm-unit-tests' ioapic reads it before the next delivery).
  private func endOfInterrupt() {
    guard let v = isr.highest else { return }
    isr[v] = false
    if tmr[v] { onLevelTriggeredEOI?(v) }
  }

  private func raiseError(_ bits: UInt32) {
    esrPending |= bits
    let l = lvt[LVT.error]
    if l & LVT.masked == 0 { deliver(vector: UInt8(truncatingIfNeeded: l), levelTriggered: false) }
  }

  // MARK: Timer

  private enum TimerMode: UInt32 { case oneShot = 0, periodic = 1, tscDeadline = 2, reserved = 3 }

  private var timerMode: TimerMode {
    TimerMode(rawValue: (lvt[LVT.timer] >> 17) & 3) ?? .oneShot
  }

  var divisor: UInt64 {
    let v = (divideConfig & 3) | ((divideConfig >> 1) & 4)
    return v == 7 ? 1 : UInt64(2) << UInt64(v)
  }

  /// Timer ticks since the count timer started.
  private func timerTicks(at now: UInt64) -> UInt64 {
    guard let s = timerStart else { return 0 }
    return timerRate.ticks(in: now >= s ? now - s : 0) / divisor
  }

  private func nanoseconds(forTimerTicks t: UInt64) -> UInt64 {
    let (hi, lo) = t.multipliedFullWidth(by: divisor)
    return hi != 0 ? UInt64.max : timerRate.nanoseconds(for: lo)
  }

  public var currentCount: UInt32 {
    guard timerMode == .oneShot || timerMode == .periodic, timerStart != nil, initialCount != 0
    else { return 0 }
    let t = timerTicks(at: clock.nanoseconds)
    let ic = UInt64(initialCount)
    if timerMode == .periodic { return UInt32(ic - t % ic) }
    return t >= ic ? 0 : UInt32(ic - t)
  }

  private func startCountTimer(now: UInt64) {
    guard initialCount != 0, timerMode == .oneShot || timerMode == .periodic else {
      timerStart = nil
      timerDeadline = nil
      return
    }
    timerStart = now
    timerDeadline = now &+ nanoseconds(forTimerTicks: UInt64(initialCount))
  }

  /// The timer mode changed with `ticks` counted so far. Between one-shot and periodic
  /// the count goes on from where it was (SDM Vol. 3A 11.5.4; kvm-unit-tests' apic
  /// "change mode"): a one-shot count that reached 0 stays stopped, a periodic one
  /// turned one-shot ends at 0. Into or out of TSC-deadline mode the timer disarms.
  private func changeTimerMode(from old: TimerMode, ticks: UInt64, now: UInt64) {
    let ic = UInt64(initialCount)
    let counting = [TimerMode.oneShot, .periodic]
    guard counting.contains(old), counting.contains(timerMode), timerStart != nil, ic != 0,
      old == .periodic || ticks < ic
    else {
      timerStart = nil
      timerDeadline = nil
      tscDeadline = 0
      return
    }
    let done = ticks % ic  // ticks into the current period
    timerStart = now &- nanoseconds(forTimerTicks: done)
    timerDeadline = timerStart! &+ nanoseconds(forTimerTicks: ic)
  }

  /// IA32_TSC_DEADLINE write; ignored unless the timer is in TSC-deadline mode.
  public func writeTSCDeadline(_ value: UInt64) {
    guard timerMode == .tscDeadline else { return }
    tscDeadline = value
    // A deadline already reached fires at the next poll.
    timerDeadline = value == 0 ? nil : tsc.nanoseconds(atTSC: value)
  }

  /// IA32_TSC_DEADLINE read: the armed deadline, 0 once it fired or outside that mode.
  public func readTSCDeadline() -> UInt64 { timerMode == .tscDeadline ? tscDeadline : 0 }

  public var nextDeadline: UInt64? { timerDeadline }

  public func poll(now: UInt64) {
    guard let due = timerDeadline, now >= due else { return }
    let l = lvt[LVT.timer]
    if l & LVT.masked == 0 { deliver(vector: UInt8(truncatingIfNeeded: l), levelTriggered: false) }
    switch timerMode {
    case .periodic:
      // Periods missed while the VMM was away coalesce into this one interrupt.
      let period = max(1, UInt64(initialCount))
      let t = timerTicks(at: now)
      let start = timerStart ?? now
      timerDeadline = start &+ nanoseconds(forTimerTicks: (t / period &+ 1) &* period)
    case .tscDeadline:
      tscDeadline = 0
      timerDeadline = nil
    default:
      // A one-shot count that reached 0 has stopped (a later switch to periodic keeps it at 0).
      timerStart = nil
      timerDeadline = nil
    }
  }

  // MARK: Registers

  private func setSVR(_ v: UInt32) {
    svr = v & 0x3FF  // vector, enable, focus-check disable
    if !isSoftwareEnabled {
      for i in lvt.indices { lvt[i] |= LVT.masked }
    }
  }

  private func writeLVT(_ i: Int, _ v: UInt32) {
    // Writable bits per entry: vector, delivery mode, polarity, trigger, mask, timer mode.
    let writable: UInt32
    switch i {
    case LVT.timer: writable = 0x700FF
    case LVT.lint0, LVT.lint1: writable = 0x1A7FF
    case LVT.error: writable = 0x100FF
    default: writable = 0x107FF
    }
    var nv = v & writable
    nv |= lvt[i] & 0x4000  // remote IRR is read-only
    if !isSoftwareEnabled { nv |= LVT.masked }
    if i == LVT.timer {
      let old = timerMode
      let now = clock.nanoseconds
      let ticks = timerTicks(at: now)
      lvt[i] = nv
      if old != timerMode { changeTimerMode(from: old, ticks: ticks, now: now) }
      return
    }
    lvt[i] = nv
  }

  private func sendIPI() {
    let ipi = InterprocessorInterrupt(
      deliveryMode: UInt8((icrLow >> 8) & 7), vector: UInt8(truncatingIfNeeded: icrLow),
      logicalDestination: icrLow & (1 << 11) != 0, level: icrLow & (1 << 14) != 0,
      levelTriggered: icrLow & (1 << 15) != 0,
      shorthand: InterprocessorInterrupt.Shorthand(rawValue: UInt8((icrLow >> 18) & 3)) ?? .none,
      destination: UInt8(truncatingIfNeeded: icrHigh >> 24))
    bus?.send(ipi, from: busIndex)
  }

  /// A fixed IPI with a vector below 16: the sender's ESR says so.
  func noteSendIllegalVector() { raiseError(1 << 5) }

  /// An NMI (IPI, IOAPIC or MSI) for this CPU.
  func latchNMI() { nmiPending = true }

  /// INIT: back to the power-up state, keeping the APIC ID and base (SDM 10.4.7.3).
  func initReset() {
    tpr = 0
    ldr = 0
    dfr = 0xFFFF_FFFF
    svr = 0xFF
    irr = VectorBitmap()
    isr = VectorBitmap()
    tmr = VectorBitmap()
    esr = 0
    esrPending = 0
    icrLow = 0
    icrHigh = 0
    lvt = [UInt32](repeating: LVT.masked, count: 6)
    divideConfig = 0
    initialCount = 0
    timerStart = nil
    tscDeadline = 0
    timerDeadline = nil
    nmiPending = false
  }

  /// The CPU takes the latched NMI (vector 2).
  public func acknowledgeNMI() { nmiPending = false }

  /// CR8 mirrors TPR bits 7:4; a CR8 write clears TPR bits 3:0 (SDM 10.8.6.1).
  public var taskPriorityClass: UInt8 {
    get { UInt8(truncatingIfNeeded: tpr >> 4) }
    set { tpr = UInt32(newValue & 0xF) << 4 }
  }

  func readRegister(_ index: Int) -> UInt32 {
    switch index {
    case 0x02: return id
    case 0x03: return 0x0005_0014  // version 0x14, max LVT entry 5
    case 0x08: return tpr
    case 0x09: return 0  // APR
    case 0x0A: return ppr
    case 0x0D: return ldr
    case 0x0E: return dfr
    case 0x0F: return svr
    case 0x10...0x17: return isr.register(index - 0x10)
    case 0x18...0x1F: return tmr.register(index - 0x18)
    case 0x20...0x27: return irr.register(index - 0x20)
    case 0x28: return esr
    case 0x30: return icrLow & ~(1 << 12)  // delivery status: always idle
    case 0x31: return icrHigh
    case 0x32...0x37: return lvt[index - 0x32]
    case 0x38: return initialCount
    case 0x39: return currentCount
    case 0x3E: return divideConfig
    default: return 0
    }
  }

  func writeRegister(_ index: Int, _ v: UInt32) {
    switch index {
    case 0x02: id = v & 0xFF00_0000
    case 0x08: tpr = v & 0xFF
    case 0x0B: endOfInterrupt()
    case 0x0D: ldr = v & 0xFF00_0000
    case 0x0E: dfr = v | 0x0FFF_FFFF
    case 0x0F: setSVR(v)
    case 0x28:
      esr = esrPending
      esrPending = 0
    case 0x30:
      icrLow = v & 0x000C_CFFF
      sendIPI()
    case 0x31: icrHigh = v & 0xFF00_0000
    case 0x32...0x37: writeLVT(index - 0x32, v)
    case 0x38:
      guard timerMode != .tscDeadline else { return }
      initialCount = v
      startCountTimer(now: clock.nanoseconds)
    case 0x3E:
      // Keep the current count across a divisor change.
      let now = clock.nanoseconds
      let remaining = UInt64(currentCount)
      divideConfig = v & 0xB
      if timerStart != nil, remaining != 0 {
        let done = UInt64(initialCount) - remaining
        timerStart = now &- nanoseconds(forTimerTicks: done)
        timerDeadline = now &+ nanoseconds(forTimerTicks: remaining)
      }
    default: break  // read-only or reserved
    }
  }

  /// A globally disabled APIC (IA32_APIC_BASE bit 11 clear) is gone from the
  /// bus: its page reads as all ones and takes no writes (SDM 10.4.3).
  public func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    guard isGloballyEnabled else { return allOnes(size) }
    guard offset < LocalAPIC.size else { return 0 }
    let reg = readRegister(Int(offset >> 4))
    // Registers are 32 bits on 16-byte boundaries; narrower reads take a slice.
    return UInt64(reg >> (UInt32(offset & 3) * 8)) & allOnes(min(size, 4))
  }

  public func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    guard isGloballyEnabled, offset < LocalAPIC.size, offset & 0xF == 0 else { return }
    writeRegister(Int(offset >> 4), UInt32(truncatingIfNeeded: value))
  }
}
