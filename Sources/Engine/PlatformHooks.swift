/// What an engine without an in-kernel platform (the interpreter) asks the
/// VMM's platform for: the time-stamp counter that the timers share, and the
/// MSRs that belong to platform devices (APIC base, TSC deadline, kvm-clock).
/// KVM keeps these in the kernel; the interpreter plays the hardware and
/// forwards them here, so the engine never sees a device.
public protocol PlatformHooks: AnyObject {
  /// The guest's TSC now.
  func readTSC() -> UInt64
  /// WRMSR IA32_TIME_STAMP_COUNTER.
  func writeTSC(_ value: UInt64)
  /// A platform MSR's value, or nil if the MSR is not the platform's.
  func readMSR(_ index: UInt32) -> UInt64?
  /// Takes a write to a platform MSR. Returns false if the MSR is not the
  /// platform's, or the value is invalid (the CPU raises #GP).
  func writeMSR(_ index: UInt32, value: UInt64) -> Bool
  /// CR8: the local APIC's task-priority class (TPR bits 7:4), nil without an APIC.
  var taskPriorityClass: UInt8? { get }
  /// MOV to CR8: sets TPR to `value << 4`.
  func setTaskPriorityClass(_ value: UInt8)
}

extension PlatformHooks {
  public var taskPriorityClass: UInt8? { nil }
  public func setTaskPriorityClass(_ value: UInt8) {}
}
