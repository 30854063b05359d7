import Boot
import Devices
import Engine
import Foundation
import Memory
import X86

extension PlatformInterrupts: InterruptInput {}

/// The PC platform the interpreter engine runs against: 8259 PIC pair,
/// 8254 PIT, CMOS RTC, one local APIC per vCPU on an `APICBus`, the IOAPIC,
/// one guest clock and TSC they all share, and kvm-clock. It answers the
/// interpreter's interrupt and platform-MSR questions (`hooks(forCPU:)`), so
/// the engine never sees a device.
final class PCPlatform {
  let clock: GuestClock
  let tsc: GuestTSC
  let pic = PIC8259Pair()
  let ioapic = IOAPIC()
  /// One per vCPU, index = vCPU index = APIC ID.
  let lapics: [LocalAPIC]
  let apicBus: APICBus
  let pit: PIT8254
  let rtc: CMOSRTC
  /// ISA IRQs to both the PIC and the IOAPIC; what devices raise.
  let irqs: ISAInterruptRouter
  /// What each vCPU asks at instruction boundaries (the PIC reaches CPU 0 only).
  let interrupts: [PlatformInterrupts]
  /// kvm-clock areas are per vCPU (each writes its own MSR).
  let kvmClocks: [KVMClock]
  /// The local APICs for `poll`, which runs on every exit: unretained, where each
  /// call through an array (of `TimedDevice`s, or of `LocalAPIC`s) cost a retain and
  /// a release. `lapics` keeps them.
  private let lapicRefs: [Unmanaged<LocalAPIC>]

  /// Earliest device deadline (guest ns), UInt64.max for none.
  private(set) var nextDeadline = UInt64.max
  /// Told each new earliest deadline (UInt64.max: none), on the vCPU thread,
  /// so the host event loop can arm its timer for it.
  var onDeadlineChange: ((UInt64) -> Void)?

  static let tscFrequency: UInt64 = 2_000_000_000

  init(
    memory: GuestMemory, portBus: PortIOBus, mmioBus: MMIOBus, clock: GuestClock,
    cpuCount: Int, layout: PlatformLayout = PlatformLayout(),
    wallClockAtBoot: Int64 = hostWallClockSeconds()
  ) throws {
    self.clock = clock
    tsc = GuestTSC(clock: clock, frequency: PCPlatform.tscFrequency)
    let tsc = self.tsc
    lapics = (0..<cpuCount).map {
      LocalAPIC(clock: clock, tsc: tsc, id: UInt8($0), isBSP: $0 == 0)
    }
    apicBus = APICBus(apics: lapics)
    irqs = ISAInterruptRouter(pic: pic, ioapic: ioapic)
    pit = PIT8254(clock: clock, irq0: IRQLine(0, lines: irqs))
    let below4G = memory.regions.filter { $0.start.rawValue < 1 << 32 }.reduce(0) { $0 + $1.size }
    rtc = CMOSRTC(
      clock: clock, irq: IRQLine(Int(layout.rtcIRQ), lines: irqs), startTime: wallClockAtBoot,
      memoryBelow4G: below4G,
      memoryAbove4G: memory.ramSize - below4G, cpuCount: cpuCount)
    let pic = self.pic
    interrupts = lapics.map { PlatformInterrupts(lapic: $0, pic: pic) }
    ioapic.connect(to: apicBus)
    try pic.register(on: portBus)
    try pit.register(on: portBus)
    try rtc.register(on: portBus, ports: layout.rtcPorts)
    try ioapic.register(on: mmioBus, base: layout.ioapicBase)
    try apicBus.register(on: mmioBus)
    lapicRefs = lapics.map { Unmanaged.passUnretained($0) }
    let wallNs = UInt64(max(0, wallClockAtBoot)) &* 1_000_000_000
    kvmClocks = (0..<cpuCount).map { _ in
      KVMClock(
        memory: memory, tscFrequency: PCPlatform.tscFrequency, bootWallNanoseconds: wallNs,
        readTSC: { tsc.read() }, nanosecondsAtTSC: { tsc.nanoseconds(atTSC: $0) })
    }
    updateDeadline()
  }

  /// Fires whatever is due, then publishes the earliest remaining deadline. Called after
  /// every exit: the clock is read only when some timer is armed, and the devices are
  /// asked twice only when one is due.
  func poll() {
    var earliest = devicesEarliestDeadline()
    if earliest != .max {
      let now = clock.nanoseconds
      if earliest <= now {
        fireIfDue(pit, now)
        fireIfDue(rtc, now)
        for a in lapicRefs { a._withUnsafeGuaranteedRef { fireIfDue($0, now) } }
        earliest = devicesEarliestDeadline()
      }
    }
    publish(earliest)
  }

  func updateDeadline() { publish(devicesEarliestDeadline()) }

  /// The earliest deadline of the devices with timers: the PIT, the RTC and the local APICs.
  private func devicesEarliestDeadline() -> UInt64 {
    var earliest = min(pit.nextDeadline ?? .max, rtc.nextDeadline ?? .max)
    for a in lapicRefs {
      if let t = a._withUnsafeGuaranteedRef({ $0.nextDeadline }) { earliest = min(earliest, t) }
    }
    return earliest
  }

  @inline(__always) private func fireIfDue<D: TimedDevice>(_ d: D, _ now: UInt64) {
    if let t = d.nextDeadline, t <= now { d.poll(now: now) }
  }

  private func publish(_ earliest: UInt64) {
    guard earliest != nextDeadline else { return }
    nextDeadline = earliest
    onDeadlineChange?(earliest)
  }

  /// Guest ns of the earliest armed timer, or nil when nothing is armed.
  var earliestDeadline: UInt64? {
    nextDeadline == .max ? nil : nextDeadline
  }

  /// The platform as vCPU `index` sees it: its own APIC and kvm-clock area.
  func hooks(forCPU index: Int) -> PlatformHooks { VCPUPlatformHooks(platform: self, cpu: index) }

  /// A vCPU's interrupt input, wake-up check included.
  func hasWakeEvent(cpu index: Int) -> Bool {
    interrupts[index].hasPendingInterrupt || interrupts[index].hasPendingNMI
  }
}

/// PlatformHooks for one vCPU: RDTSC and the shared devices go to the platform,
/// the APIC MSRs, TPR and kvm-clock MSR to this vCPU's own.
private final class VCPUPlatformHooks: PlatformHooks {
  unowned let platform: PCPlatform
  let lapic: LocalAPIC
  let kvmClock: KVMClock
  /// RDTSC's, held here: through `platform` (unowned) each read paid a refcount round trip.
  let tsc: GuestTSC

  init(platform: PCPlatform, cpu: Int) {
    self.platform = platform
    tsc = platform.tsc
    lapic = platform.lapics[cpu]
    kvmClock = platform.kvmClocks[cpu]
  }

  func readTSC() -> UInt64 { tsc.read() }

  func writeTSC(_ value: UInt64) {
    platform.tsc.write(value)
    for c in platform.kvmClocks { c.publish() }
  }

  func readMSR(_ index: UInt32) -> UInt64? {
    switch index {
    case MSR.apicBase: return lapic.apicBase
    case MSR.tscDeadline: return lapic.readTSCDeadline()
    case MSR.kvmSystemTimeNew: return kvmClock.systemTimeMSR
    case MSR.kvmWallClockNew: return 0
    default: return nil
    }
  }

  var taskPriorityClass: UInt8? { lapic.taskPriorityClass }

  func setTaskPriorityClass(_ value: UInt8) { lapic.taskPriorityClass = value }

  func writeMSR(_ index: UInt32, value: UInt64) -> Bool {
    switch index {
    case MSR.apicBase:
      return lapic.writeAPICBase(value)
    case MSR.tscDeadline:
      lapic.writeTSCDeadline(value)
      platform.updateDeadline()
    case MSR.kvmSystemTimeNew:
      return kvmClock.writeSystemTime(value)
    case MSR.kvmWallClockNew:
      return kvmClock.writeWallClock(value)
    default:
      return false
    }
    return true
  }
}

extension PCPlatform: MSIDelivery {
  /// MSI-X messages from PCI devices go to the local APICs they address.
  func deliver(address: UInt64, data: UInt32) {
    guard let m = IOAPICMessage(msiAddress: address, data: data) else { return }
    apicBus.accept(m)
  }
}
