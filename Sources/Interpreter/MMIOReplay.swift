import Engine
import Memory
import X86

// Exactly-once MMIO for instructions that exit more than once.
//
// The VMM answers an MMIO read between two runs, so a read restarts its instruction;
// the restart replays every access the device has already seen (`mmioCompleted`)
// instead of making it again. Writes are held (in `pendingExit` and
// `queuedMMIOWrites`) until the instruction retires, then handed out in order. A read
// that follows held writes of the same instruction first sends those writes (program
// order), records them as done, and restarts. An instruction that faults drops the
// writes it still holds; writes it had to send before a read stay done, as on QEMU,
// which performs each MMIO store when the instruction makes it (SDM 6.6: a faulting
// instruction may have made some of its stores).

extension InterpreterCPU {
  /// The value of an access this instruction made before its last restart, or nil
  /// when the access is new. A different access from the log drops the rest of it.
  @inline(__always) func replayMMIO(_ a: MMIOAccess) -> UInt64? {
    guard mmioReplayed < mmioCompleted.count else { return nil }
    let d = mmioCompleted[mmioReplayed]
    // Size 0: a read restored from a snapshot older than the size was saved.
    if d.address == a.address && d.isWrite == a.isWrite && (d.size == a.size || d.size == 0)
      && (!a.isWrite || d.value == a.value)
    {
      mmioReplayed += 1
      return d.value
    }
    mmioCompleted.removeSubrange(mmioReplayed...)  // not the same accesses: go on from here
    return nil
  }

  /// Before a new MMIO read: the writes this instruction holds go to the device first,
  /// and the instruction restarts once they are done.
  func issueHeldMMIOWrites() throws(Fault) {
    guard mmioCompleted.count < Self.mmioAccessesPerInstruction else {
      pendingExit = .internalError(
        "an instruction at RIP 0x" + String(startRIP, radix: 16) + " made more than "
          + String(Self.mmioAccessesPerInstruction) + " MMIO accesses")
      throw Fault.exit
    }
    // The held writes: `pendingExit` (unless a debugger's watchpoint took it) and the queue.
    if case .mmio(let first)? = pendingExit, first.isWrite {
      mmioCompleted.append(first)
    } else if queuedMMIOWrites.isEmpty {
      return
    }
    mmioCompleted.append(contentsOf: queuedMMIOWrites)
    mmioRestart = true
    throw Fault.exit  // `run()` returns `pendingExit`, then the queued writes
  }

  /// The instruction is abandoned (a fault): it replays nothing and its held writes
  /// never reach the device.
  func dropMMIOProgress() {
    mmioCompleted.removeAll(keepingCapacity: true)
    mmioReplayed = 0
    mmioRestart = false
    if case .mmio(let a)? = pendingExit, a.isWrite { pendingExit = nil }
    // Only this instruction's: `run()` hands out the queue before running anything.
    queuedMMIOWrites.removeAll(keepingCapacity: true)
  }

  /// A REP element retired (its registers are updated): the next element's accesses are new.
  @inline(__always) func mmioElementRetired() {
    if !mmioCompleted.isEmpty {
      mmioCompleted.removeAll(keepingCapacity: true)
      mmioReplayed = 0
    }
  }
}
