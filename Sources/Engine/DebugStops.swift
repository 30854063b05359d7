/// Debug stops an engine can make for a debugger (the VMM's gdb stub): stop before
/// an instruction at an address, after one instruction, or after an access to a
/// watched range. Generic on purpose: the engine knows nothing of gdb.
public struct DebugSettings: Equatable, Sendable {
  /// Stop before executing an instruction whose RIP is one of these.
  public var breakpoints: Set<UInt64> = []
  /// Stop after an instruction that accessed one of these linear ranges.
  public var watchpoints: [Watchpoint] = []
  /// Stop after exactly one instruction (no interrupt is delivered meanwhile).
  public var singleStep = false

  public init(
    breakpoints: Set<UInt64> = [], watchpoints: [Watchpoint] = [], singleStep: Bool = false
  ) {
    self.breakpoints = breakpoints
    self.watchpoints = watchpoints
    self.singleStep = singleStep
  }

  public var isEmpty: Bool { breakpoints.isEmpty && watchpoints.isEmpty && !singleStep }
}

public struct Watchpoint: Equatable, Hashable, Sendable {
  public enum Kind: Sendable { case write, read, access }
  public var address: UInt64
  public var length: UInt64
  public var kind: Kind
  public init(address: UInt64, length: UInt64, kind: Kind) {
    self.address = address
    self.length = length
    self.kind = kind
  }

  /// Whether an access of `size` bytes at `lin` (a store when `write`) triggers this watchpoint.
  @inline(__always) public func matches(_ lin: UInt64, size: Int, write: Bool) -> Bool {
    guard lin &+ UInt64(size) > address, lin < address &+ length else { return false }
    switch kind {
    case .write: return write
    case .read: return !write
    case .access: return true
    }
  }
}

/// Why an engine stopped for the debugger (`VMExit.debug`).
public enum DebugStop: Equatable, Sendable {
  /// About to execute the instruction at this RIP (not executed yet).
  case breakpoint(rip: UInt64)
  /// One instruction ran (`DebugSettings.singleStep`).
  case step
  /// The instruction that just ran accessed `address`, inside `watchpoint`.
  case watchpoint(Watchpoint, address: UInt64)
}
