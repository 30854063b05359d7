import Boot
import Devices
import Engine
import Foundation
import Memory
import X86

extension PlatformInterrupts: InterruptInput {}

/// The PC platform the interpreter engine runs against: 8259 PIC pair,
/// 8254 PIT, CMOS RTC, local APIC and IOAPIC on the buses, one guest clock
/// and TSC they all share, and kvm-clock. It answers the interpreter's
/// interrupt and platform-MSR questions, so the engine never sees a device.
final class PCPlatform: PlatformHooks {
  let clock: GuestClock
  let tsc: GuestTSC
  let pic = PIC8259Pair()
  let ioapic = IOAPIC()
  let lapic: LocalAPIC
  let pit: PIT8254
  let rtc: CMOSRTC
  /// ISA IRQs to both the PIC and the IOAPIC; what devices raise.
  let irqs: ISAInterruptRouter
  let interrupts: PlatformInterrupts
  let kvmClock: KVMClock
  private let timed: [TimedDevice]

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
    lapic = LocalAPIC(clock: clock, tsc: tsc)
    irqs = ISAInterruptRouter(pic: pic, ioapic: ioapic)
    pit = PIT8254(clock: clock, irq0: IRQLine(0, lines: irqs))
    let below4G = memory.regions.filter { $0.start.rawValue < 1 << 32 }.reduce(0) { $0 + $1.size }
    rtc = CMOSRTC(
      clock: clock, irq: IRQLine(Int(layout.rtcIRQ), lines: irqs), startTime: wallClockAtBoot,
      memoryBelow4G: below4G,
      memoryAbove4G: memory.ramSize - below4G, cpuCount: cpuCount)
    interrupts = PlatformInterrupts(lapic: lapic, pic: pic)
    ioapic.connect(to: lapic)
    try pic.register(on: portBus)
    try pit.register(on: portBus)
    try rtc.register(on: portBus, ports: layout.rtcPorts)
    try ioapic.register(on: mmioBus, base: layout.ioapicBase)
    try lapic.register(on: mmioBus)
    timed = [pit, rtc, lapic]
    let wallNs = UInt64(max(0, wallClockAtBoot)) &* 1_000_000_000
    let tsc = self.tsc
    kvmClock = KVMClock(
      memory: memory, tscFrequency: PCPlatform.tscFrequency, bootWallNanoseconds: wallNs,
      readTSC: { tsc.read() }, nanosecondsAtTSC: { tsc.nanoseconds(atTSC: $0) })
    updateDeadline()
  }

  /// Fires whatever is due; returns the earliest remaining deadline.
  func poll() {
    let now = clock.nanoseconds
    for d in timed {
      if let t = d.nextDeadline, t <= now { d.poll(now: now) }
    }
    updateDeadline()
  }

  func updateDeadline() {
    var earliest = UInt64.max
    for d in timed { if let t = d.nextDeadline { earliest = min(earliest, t) } }
    guard earliest != nextDeadline else { return }
    nextDeadline = earliest
    onDeadlineChange?(earliest)
  }

  /// Guest ns of the earliest armed timer, or nil when nothing is armed.
  var earliestDeadline: UInt64? {
    nextDeadline == .max ? nil : nextDeadline
  }

  // MARK: PlatformHooks

  func readTSC() -> UInt64 { tsc.read() }

  func writeTSC(_ value: UInt64) {
    tsc.write(value)
    kvmClock.publish()
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
      lapic.writeAPICBase(value)
    case MSR.tscDeadline:
      lapic.writeTSCDeadline(value)
      updateDeadline()
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
  /// MSI-X messages from PCI devices go straight to the local APIC.
  func deliver(address: UInt64, data: UInt32) {
    guard let m = IOAPICMessage(msiAddress: address, data: data) else { return }
    lapic.accept(m)
  }
}
