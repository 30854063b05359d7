import Engine

// Debug stops for a debugger (DebugStops.swift). Breakpoints are address checks before
// each instruction, not INT3 patched into guest memory: guest memory, the decode cache
// and self-modifying-code detection never see them. While any stop is set, instructions
// run one at a time without the translator; with none set, nothing here is on the path.
extension InterpreterCPU {
  public var supportsDebugStops: Bool { true }

  public func setDebugSettings(_ settings: DebugSettings) throws {
    let watchesChanged = settings.watchpoints != debug.watchpoints
    debug = settings
    debugActive = !settings.isEmpty || drActive
    debugStepping = settings.singleStep
    watchActive = !settings.watchpoints.isEmpty || drDataActive
    debugStepTaken = false
    // Watched pages must leave the TLB (and unwatched ones may come back).
    if watchesChanged { flushTLB(keepGlobal: false) }
  }

  /// Single-step: one instruction, then `.debug(.step)` (after any exit it made).
  func debugSingleStep() -> VMExit? {
    if debugStepTaken {
      debugStepTaken = false
      return record(.debug(.step))
    }
    interruptShadow = false
    debugResumeRIP = nil
    single()
    debugStepTaken = true
    return debugFinish()
  }

  /// Like `runBatch`, one instruction at a time, stopping at breakpoints and watchpoints.
  func runDebugBatch(_ budget: UInt64) {
    var n = budget
    stop = false
    while n != 0 {
      if drActive && drInstructionBreakpoint() { break }
      if debug.breakpoints.contains(rip) {
        if debugResumeRIP != rip {
          debugResumeRIP = rip
          exit(.debug(.breakpoint(rip: rip)))
          break
        }
      }
      debugResumeRIP = nil
      movSSBlocking = false
      do {
        try stepCached()
      } catch {
        handleFault(error)
      }
      n &-= 1
      if drActive { drAfterInstruction(singleStep: false) }
      if stop { break }
    }
    instructions &+= budget &- n
  }

  /// After an instruction with debug registers on: its #DB trap, unless it has not
  /// completed (it restarts once the VMM supplies a value or has taken the writes it
  /// sent ahead of a read, and notes its accesses again).
  func drAfterInstruction(singleStep: Bool) {
    if pendingIn || mmioRestart {
      drHits = 0
      return
    }
    debugTrapAfterInstruction(singleStep: singleStep)
  }

  /// `finishBatch` for a step: a watchpoint hit replaces the step report.
  private func debugFinish() -> VMExit? {
    let e = finishBatch()
    if case .debug = e { debugStepTaken = false }
    return e
  }

  func isWatchedPage(_ page: UInt64) -> Bool {
    if drWatchesPage(page) { return true }
    for w in debug.watchpoints where w.address < page &+ 4096 && w.address &+ w.length > page {
      return true
    }
    return false
  }

  /// Slow-path data access while watchpoints are set: the first hit ends the instruction's
  /// batch, and is reported after the instruction completes (x86 data breakpoints are traps).
  func noteWatchedAccess(_ lin: UInt64, _ size: Int, write: Bool) {
    if drDataActive { drNoteAccess(lin, size, write: write) }
    guard pendingExit == nil else { return }
    for w in debug.watchpoints where w.matches(lin, size: size, write: write) {
      exit(.debug(.watchpoint(w, address: max(lin, w.address))))
      return
    }
  }
}
