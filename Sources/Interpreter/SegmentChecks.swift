import X86

/// Segment limit and type checks (SDM vol. 3, 5.3 and 5.4) for 16- and 32-bit
/// modes. 64-bit mode checks none (only FS/GS bases apply), and neither does a
/// flat segment (expand-up, 4 GiB limit, usable for the access): a per-segment
/// bit says so, so a long-mode or flat access costs one test of a cached mask.
extension InterpreterCPU {
  /// Recomputes the "needs no check" masks and `csLimited` from the segment
  /// registers and the mode. Call after any change to a segment register's
  /// limit, type or usability (updateMode does).
  func refreshSegmentChecks() {
    defer {
      dcMode = UInt8(truncatingIfNeeded: codeSize) | (mode64 ? 0x10 : 0) | (csLimited ? 0x20 : 0)
    }
    if mode64 {
      segReadFlat = 0x3F
      segWriteFlat = 0x3F
      csLimited = false
      return
    }
    let typed = protectedMode && rfl & RFLAGS.vm == 0
    var rd = 0
    var wr = 0
    for i in 0..<6 {
      let d = seg[i]
      guard !d.unusable, d.limit == 0xFFFF_FFFF else { continue }
      let bit = 1 << i
      if !typed {
        rd |= bit
        wr |= bit
      } else if d.type & 8 != 0 {
        if d.type & 2 != 0 { rd |= bit }  // readable code; code is never writable
      } else if d.type & 4 == 0 {
        rd |= bit
        if d.type & 2 != 0 { wr |= bit }
      }
    }
    segReadFlat = rd
    segWriteFlat = wr
    csLimited = seg[CS].limit != 0xFFFF_FFFF
  }

  /// Checks an access of `size` bytes at offset `off` through segment `s`.
  @inline(__always) func checkSegment(_ s: Int, _ off: UInt64, _ size: Int, write: Bool)
    throws(Fault)
  {
    if (write ? segWriteFlat : segReadFlat) & (1 << s) == 0 {
      try checkSegmentSlow(s, off, size, write: write)
    }
  }

  /// #SS(0) for SS, #GP(0) otherwise: null or unusable segment, a write to code
  /// or read-only data, a read of execute-only code, or any byte outside the limit.
  @inline(never)
  func checkSegmentSlow(_ s: Int, _ off: UInt64, _ size: Int, write: Bool) throws(Fault) {
    let d = seg[s]
    let fault = s == SS ? Fault.ss(0) : Fault.gp(0)
    let last = off &+ UInt64(size) &- 1
    guard protectedMode && rfl & RFLAGS.vm == 0 else {
      // Real mode: the cached limit only (64 KiB, or more in "unreal" mode).
      if last > UInt64(d.limit) || last < off { throw fault }
      return
    }
    if d.unusable { throw fault }
    let code = d.type & 8 != 0
    if write ? (code || d.type & 2 == 0) : (code && d.type & 2 == 0) { throw fault }
    if !code && d.type & 4 != 0 {
      // Expand-down: valid offsets are limit+1 up to 64 KiB or 4 GiB (by B).
      let upper: UInt64 = d.db ? 0xFFFF_FFFF : 0xFFFF
      if off <= UInt64(d.limit) || last > upper || last < off { throw fault }
    } else if last > UInt64(d.limit) || last < off {
      throw fault
    }
  }

  /// The first byte of an instruction must lie within CS's limit; limits how
  /// many bytes `beginFetch` may take before `fetchSlow` checks again.
  @inline(never) func checkFetchStart() throws(Fault) {
    let limit = UInt64(seg[CS].limit)
    if rip > limit { throw Fault.gp(0) }
    fetchAvail = min(fetchAvail, Int(min(limit - rip + 1, 15)))
  }

  /// A near JMP/Jcc/LOOP/CALL/RET target outside CS's limit: the branch itself
  /// raises #GP(0), before any push (SDM vol. 2, JMP and CALL), not the fetch there.
  @inline(__always) func nearTargetPastLimit(_ target: UInt64) -> Bool {
    csLimited && target > UInt64(seg[CS].limit)
  }

  /// A far transfer's target offset must lie within the new code segment's limit.
  @inline(__always) func checkCodeLimit(_ target: UInt64, _ d: SegmentRegister) throws(Fault) {
    if !(longActive && d.l) && target > UInt64(d.limit) { throw Fault.gp(0) }
  }
}
