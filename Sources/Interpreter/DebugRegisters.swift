import X86

// The guest's own debug registers (SDM 17.2-17.3): DR0-DR3 instruction, data and I/O
// breakpoints enabled by DR7, reported by #DB with DR6.B0-B3; DR7.GD; and MOV SS /
// POP SS blocking #DB traps for one instruction. They share the debugger's
// machinery (InterpreterDebug.swift): while DR7 enables a breakpoint, instructions
// run one at a time through `runDebugBatch`, and pages holding a data breakpoint
// stay out of the TLB so every access to them is checked. With DR7 enabling
// nothing, none of this is on the path.
extension InterpreterCPU {
  static let dr6BS: UInt64 = 1 << 14
  static let dr6BD: UInt64 = 1 << 13
  static let dr7GD: UInt64 = 1 << 13

  /// DR7's enable bits for breakpoint `i` (Li or Gi).
  @inline(__always) func drEnabled(_ i: Int) -> Bool { dr[7] >> UInt64(2 * i) & 3 != 0 }

  /// R/W field of breakpoint `i`: 0 execute, 1 write, 2 I/O, 3 read or write.
  @inline(__always) func drKind(_ i: Int) -> UInt64 { dr[7] >> UInt64(16 + 4 * i) & 3 }

  /// Bytes breakpoint `i` covers (LEN field: 1, 2, 8, 4), its address aligned down to it.
  func drRange(_ i: Int) -> (start: UInt64, length: UInt64) {
    let len: UInt64 = [1, 2, 8, 4][Int(dr[7] >> UInt64(18 + 4 * i) & 3)]
    return (dr[i] & ~(len - 1), len)
  }

  /// After a write to DR0-DR3 or DR7 (or a restore): which checks are on.
  func debugRegistersChanged() {
    var exec = false
    var data = false
    var io = false
    for i in 0..<4 where drEnabled(i) {
      switch drKind(i) {
      case 0: exec = true
      case 1, 3: data = true
      default: io = true
      }
    }
    let dataChanged = data || drDataActive
    drActive = exec || data || io
    drDataActive = data
    debugActive = !debug.isEmpty || drActive
    watchActive = !debug.watchpoints.isEmpty || drDataActive
    // Pages holding a data breakpoint must leave the TLB (and may come back).
    if dataChanged { flushTLB(keepGlobal: false) }
  }

  /// Before an instruction: an enabled instruction breakpoint at RIP raises #DB
  /// (a fault: the instruction has not run) unless RFLAGS.RF says resume. Returns
  /// true when it did. RF lasts one instruction, so it is cleared here.
  func drInstructionBreakpoint() -> Bool {
    guard drActive else { return false }
    if rfl & RFLAGS.rf != 0 {
      rfl &= ~RFLAGS.rf
      return false
    }
    let lin = mode64 ? rip : (seg[CS].base &+ rip) & 0xFFFF_FFFF
    var hits: UInt64 = 0
    for i in 0..<4 where drEnabled(i) && drKind(i) == 0 && dr[i] == lin { hits |= 1 << UInt64(i) }
    guard hits != 0 else { return false }
    startRIP = rip
    dr[6] = dr[6] & ~0xF | hits
    raise(1, 0, false)
    return true
  }

  /// Whether a data breakpoint covers part of `page`.
  func drWatchesPage(_ page: UInt64) -> Bool {
    guard drDataActive else { return false }
    for i in 0..<4 where drEnabled(i) && drKind(i) & 1 != 0 {
      let r = drRange(i)
      if r.start < page &+ 4096 && r.start &+ r.length > page { return true }
    }
    return false
  }

  /// A data access on the slow path: notes the data breakpoints it hits.
  func drNoteAccess(_ lin: UInt64, _ size: Int, write: Bool) {
    for i in 0..<4 where drEnabled(i) {
      let k = drKind(i)
      guard k == 3 || (k == 1 && write) else { continue }
      let r = drRange(i)
      if lin &+ UInt64(size) > r.start && lin < r.start &+ r.length { drHits |= 1 << UInt64(i) }
    }
  }

  /// IN, OUT, INS or OUTS completed an access to `size` ports from `port`: notes the
  /// I/O breakpoints (R/W = 10) it hits, reported as a trap after the instruction (a
  /// REP INS/OUTS after the element). The SDM defines R/W = 10 only with CR4.DE set and
  /// leaves it undefined without; like QEMU, this CPU takes it as an I/O breakpoint
  /// either way.
  func drNoteIO(_ port: UInt16, _ size: Int) {
    for i in 0..<4 where drEnabled(i) && drKind(i) == 2 {
      let r = drRange(i)
      if UInt64(port) &+ UInt64(size) > r.start && UInt64(port) < r.start &+ r.length {
        drHits |= 1 << UInt64(i)
      }
    }
  }

  /// After an instruction: the #DB trap it owes for data breakpoints and, when
  /// `singleStep`, for RFLAGS.TF, as one exception. MOV SS / POP SS defer their
  /// data breakpoints past the next instruction and suppress their own single-step
  /// trap (SDM 6.8.3). Returns true when it raised #DB.
  @discardableResult
  func debugTrapAfterInstruction(singleStep: Bool) -> Bool {
    if movSSBlocking {
      drDeferredHits |= drHits
      drHits = 0
      return false
    }
    let hits = drHits | drDeferredHits
    drHits = 0
    drDeferredHits = 0
    guard hits != 0 || singleStep else { return false }
    dr[6] = dr[6] & ~0xF | hits | (singleStep ? Self.dr6BS : 0)
    raise(1, 0, false)
    drHits = 0  // the delivery's own stack writes are not the instruction's
    return true
  }

  /// MOV to or from a debug register with DR7.GD set: #DB (a fault) with DR6.BD,
  /// and GD cleared so the handler can use the registers.
  func checkGeneralDetect() throws(Fault) {
    guard dr[7] & Self.dr7GD != 0 else { return }
    dr[7] &= ~Self.dr7GD
    dr[6] = dr[6] & ~0xF | Self.dr6BD
    throw Fault(vector: 1, code: 0, hasCode: false)
  }
}
