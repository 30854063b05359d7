import Memory
import X86

/// Why an engine stopped running guest code. One type for every engine:
/// the VMM's run loop switches over it and never asks which engine produced it.
public enum VMExit: Equatable, Sendable {
  /// IN/OUT (one element; string and REP forms arrive as a sequence of these).
  /// For `.in`, the VMM answers with `VirtualCPU.completeIO(value:)` before the next run.
  case portIO(PortIOAccess)
  /// A guest-physical access that hit no RAM. Reads are answered with `completeIO`.
  case mmio(MMIOAccess)
  /// HLT with nothing to wake the vCPU from inside the engine.
  case halt
  /// Triple fault or an explicit shutdown: the VM cannot continue.
  case shutdown(reason: String)
  /// VMCALL/VMMCALL: number in RAX, arguments in RBX, RCX, RDX, RSI.
  /// The VMM writes the result with `setHypercallResult`.
  case hypercall(number: UInt64, arguments: [UInt64])
  /// The engine itself failed (KVM error, unsupported state).
  case internalError(String)
  /// The instruction budget (`--max-instructions`) ran out.
  case instructionLimit(UInt64)
  /// Another thread called `kick()` (console input, signal, timer).
  case interrupted
  /// A stop requested through `VirtualCPU.setDebugSettings` (breakpoint, step, watchpoint).
  case debug(DebugStop)
}

public struct PortIOAccess: Equatable, Sendable {
  public enum Direction: Sendable { case `in`, out }
  public var port: UInt16
  /// 1, 2 or 4 bytes.
  public var size: Int
  public var direction: Direction
  /// The value written (for `.out`).
  public var value: UInt32
  public init(port: UInt16, size: Int, direction: Direction, value: UInt32 = 0) {
    self.port = port
    self.size = size
    self.direction = direction
    self.value = value
  }
}

public struct MMIOAccess: Equatable, Sendable {
  public var address: GuestPhysicalAddress
  /// 1, 2, 4 or 8 bytes.
  public var size: Int
  public var isWrite: Bool
  public var value: UInt64
  public init(address: GuestPhysicalAddress, size: Int, isWrite: Bool, value: UInt64 = 0) {
    self.address = address
    self.size = size
    self.isWrite = isWrite
    self.value = value
  }
}
