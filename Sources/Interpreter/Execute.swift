import Engine
import X86

extension InterpreterCPU {
  // MARK: Registers

  @inline(__always) func getReg(_ i: Int, _ size: Int) -> UInt64 {
    switch size {
    case 1:
      if i >= 4 && i < 8 && rex == 0 { return (r[i &- 4] >> 8) & 0xFF }
      return r[i] & 0xFF
    case 2: return r[i] & 0xFFFF
    case 4: return r[i] & 0xFFFF_FFFF
    default: return r[i]
    }
  }

  @inline(__always) func setReg(_ i: Int, _ size: Int, _ v: UInt64) {
    switch size {
    case 1:
      if i >= 4 && i < 8 && rex == 0 {
        r[i &- 4] = (r[i &- 4] & ~0xFF00) | ((v & 0xFF) << 8)
      } else {
        r[i] = (r[i] & ~0xFF) | (v & 0xFF)
      }
    case 2: r[i] = (r[i] & ~0xFFFF) | (v & 0xFFFF)
    case 4: r[i] = v & 0xFFFF_FFFF
    default: r[i] = v
    }
  }

  // MARK: ModRM

  /// The ModRM operand of an instruction that is not a decoded form, through the one
  /// operand decoder (`decodeOperand`); the address is computed now, RIP-relative at use.
  @inline(__always) func decodeModRM() throws(Fault) {
    let e = dcache.scratch
    try decodeOperand(e)
    modReg = Int(e.pointee.reg)
    if e.pointee.isReg {
      modIsReg = true
      modRM = Int(e.pointee.rm)
      return
    }
    modIsReg = false
    eaSeg = Int(e.pointee.seg)
    eaRipRel = e.pointee.ripRel
    if !eaRipRel { eaOff = effectiveAddress(e, 0) }
  }

  /// MOV to/from CR and DR: the ModRM byte always names two registers; its mod
  /// bits are ignored (SDM Vol. 2B, MOV CRn/DRn), so no SIB or displacement follows.
  func decodeRegisterModRM() throws(Fault) {
    let m = Int(try fetch8())
    modReg = ((m >> 3) & 7) | (Int(rex & 4) << 1)
    modRM = (m & 7) | (Int(rex & 1) << 3)
    modIsReg = true
  }

  /// Effective offset of the memory operand (RIP-relative resolved against the instruction end).
  @inline(__always) func addr() -> UInt64 {
    if eaRipRel { return effectiveAddress(dcache.scratch, startRIP &+ UInt64(ipos)) }
    return eaOff
  }

  @inline(__always) func readE(_ size: Int) throws(Fault) -> UInt64 {
    if modIsReg { return getReg(modRM, size) }
    return try readMem(eaSeg, addr(), size)
  }

  @inline(__always) func writeE(_ size: Int, _ v: UInt64) throws(Fault) {
    if modIsReg {
      setReg(modRM, size, v)
      return
    }
    try writeMem(eaSeg, addr(), size, v)
  }

  @inline(__always) func imm(_ size: Int) throws(Fault) -> UInt64 {
    switch size {
    case 1: return UInt64(try fetch8())
    case 2: return try fetch16()
    case 4: return try fetch32()
    default: return sext(try fetch32(), 4)
    }
  }

  // MARK: Stack

  @inline(__always) var stackMask: UInt64 {
    stackSize == 8 ? ~0 : stackSize == 4 ? 0xFFFF_FFFF : 0xFFFF
  }

  @inline(__always) func setSP(_ v: UInt64) {
    switch stackSize {
    case 8: r[4] = v
    case 4: r[4] = v & 0xFFFF_FFFF
    default: r[4] = (r[4] & ~0xFFFF) | (v & 0xFFFF)
    }
  }

  @inline(__always) func push(_ v: UInt64, _ size: Int) throws(Fault) {
    let sp = (r[4] &- UInt64(size)) & stackMask
    try writeMem(SS, sp, size, v)
    setSP(sp)
  }

  @inline(__always) func pop(_ size: Int) throws(Fault) -> UInt64 {
    let sp = r[4] & stackMask
    let v = try readMem(SS, sp, size)
    setSP(sp &+ UInt64(size))
    return v
  }

  /// Operand size of PUSH/POP/CALL/RET and friends (64 by default in 64-bit mode).
  @inline(__always) var stackOpSize: Int { mode64 ? (has66 ? 2 : 8) : opSize }

  @inline(__always) var nextRIP: UInt64 { (startRIP &+ UInt64(ipos)) & codeMask }

  /// A relative branch's target: `end` is the instruction's end, `size` its operand size.
  /// The one definition, also used by the translator's BlockCompiler.
  @inline(__always) static func relativeBranchTarget(
    _ end: UInt64, _ disp: UInt64, _ size: Int, mode64: Bool
  ) -> UInt64 {
    let t = end &+ disp
    if mode64 { return t }
    return size == 2 ? t & 0xFFFF : t & 0xFFFF_FFFF
  }

  @inline(__always) func branchTarget(_ end: UInt64, _ disp: UInt64, _ size: Int) -> UInt64 {
    InterpreterCPU.relativeBranchTarget(end, disp, size, mode64: mode64)
  }

  @inline(__always) func branchTarget(_ disp: UInt64) -> UInt64 {
    branchTarget(startRIP &+ UInt64(ipos), disp, opSize)
  }

  // MARK: Step

  /// Decodes and executes one instruction.
  @inline(__always) func step() throws(Fault) {
    startRIP = rip
    try beginFetch()
    let b = try decodeStart()
    if lockPrefix { try checkLock(b) }
    let opcodeEnd = ipos
    let e = dcache.scratch
    if try decodeForm(b, e) {
      e.pointee.len = UInt8(ipos)
      try runDecoded(UnsafePointer(e))
      return
    }
    ipos = opcodeEnd
    try execute(b)
  }

  /// Legacy prefixes and REX (REX counts only right before the opcode).
  @inline(__always) func isPrefix(_ b: UInt8) -> Bool {
    let lo: UInt64 = (1 << 0x26) | (1 << 0x2E) | (1 << 0x36) | (1 << 0x3E)
    let mid: UInt64 = (0xF << (0x64 - 64)) | (mode64 ? 0xFFFF : 0)
    let hi: UInt64 = (1 << (0xF0 - 192)) | (1 << (0xF2 - 192)) | (1 << (0xF3 - 192))
    let w = b < 64 ? lo : (b < 128 ? mid : (b >= 192 ? hi : 0))
    return (w >> UInt64(b & 63)) & 1 != 0
  }

  func decodePrefixes(_ first: UInt8) throws(Fault) -> UInt8 {
    var b = first
    prefixLoop: while true {
      switch b {
      case 0x66:
        has66 = true
        opSize = codeSize == 2 ? 4 : 2
      case 0x67:
        adSize = codeSize == 8 ? 4 : (codeSize == 4 ? 2 : 4)
      case 0x26, 0x2E, 0x36, 0x3E:
        segOvr = Int((b >> 3) & 3)
      case 0x64: segOvr = FS
      case 0x65: segOvr = GS
      case 0xF0: lockPrefix = true
      case 0xF2, 0xF3: rep = b
      case 0x40...0x4F:
        if !mode64 { break prefixLoop }
        rex = b
        b = try fetch8()
        continue prefixLoop
      default:
        break prefixLoop
      }
      rex = 0
      b = try fetch8()
    }
    if rex & 8 != 0 { opSize = 8 }
    return b
  }

  /// Executes the instruction whose (first) opcode byte is `b` (prefixes are decoded)
  /// when it is not one of the decoded forms (`decodeForm`).
  @inline(__always) func execute(_ b: UInt8) throws(Fault) {
    switch b {
    case 0x06, 0x0E, 0x16, 0x1E:
      if mode64 { throw Fault.ud() }
      try push(UInt64(seg[Int(b >> 3)].selector), opSize)
    case 0x07, 0x17, 0x1F:
      if mode64 { throw Fault.ud() }
      let sp0 = r[4]
      let v = try pop(opSize)
      do {
        try loadSeg(Int(b >> 3), UInt16(truncatingIfNeeded: v))
      } catch {
        r[4] = sp0
        throw error
      }
      if b == 0x17 { interruptShadow = true; movSSBlocking = true; stop = true }
    case 0x0F:
      // Jcc, SETcc, CMOVcc, IMUL, MOVZX/MOVSX are decoded forms; exec0F has the rest.
      try exec0F()
      return  // exec0F sets rip itself
    case 0x27, 0x2F, 0x37, 0x3F:
      if mode64 { throw Fault.ud() }
      bcdAdjust(b)
    case 0x40...0x47:  // INC r (not 64-bit: REX there)
      let i = Int(b & 7)
      setReg(i, opSize, incdec(getReg(i, opSize), opSize, dec: false))
    case 0x48...0x4F:
      let i = Int(b & 7)
      setReg(i, opSize, incdec(getReg(i, opSize), opSize, dec: true))
    case 0x60:
      if mode64 { throw Fault.ud() }
      let s = opSize
      let sp = getReg(4, s)
      let sp0 = r[4]
      do {
        for i in 0..<8 { try push(i == 4 ? sp : getReg(i, s), s) }
      } catch {
        r[4] = sp0
        throw error
      }
    case 0x61:
      if mode64 { throw Fault.ud() }
      let s = opSize
      var vals = (
        UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0)
      )
      let sp0 = r[4]
      do {
        vals.7 = try pop(s)
        vals.6 = try pop(s)
        vals.5 = try pop(s)
        _ = try pop(s)
        vals.3 = try pop(s)
        vals.2 = try pop(s)
        vals.1 = try pop(s)
        vals.0 = try pop(s)
      } catch {
        r[4] = sp0
        throw error
      }
      setReg(7, s, vals.7)
      setReg(6, s, vals.6)
      setReg(5, s, vals.5)
      setReg(3, s, vals.3)
      setReg(2, s, vals.2)
      setReg(1, s, vals.1)
      setReg(0, s, vals.0)
    case 0x63:  // ARPL (64-bit mode: MOVSXD, a decoded form)
      try decodeModRM()
      if !protectedMode { throw Fault.ud() }
      let d = try readE(2)
      let s = getReg(modReg, 2)
      if d & 3 < s & 3 {
        try writeE(2, (d & ~3) | (s & 3))
        setStatus(RFLAGS.zf, mask: RFLAGS.zf)
      } else {
        setStatus(0, mask: RFLAGS.zf)
      }
    case 0x68:
      let s = stackOpSize
      let v = try imm(s == 2 ? 2 : 4)
      try push(s == 8 ? sext(v, 4) : v, s)
    case 0x6A:
      let s = stackOpSize
      let v = sext(UInt64(try fetch8()), 1)
      try push(v & sizeMask(s), s)
    case 0x69, 0x6B:
      try decodeModRM()
      let s = opSize
      let i = b == 0x6B ? sext(UInt64(try fetch8()), 1) : sext(try imm(s), s == 8 ? 4 : s)
      let v = try readE(s)
      setReg(modReg, s, imul2(v, i, s))
    case 0x6C, 0x6D, 0x6E, 0x6F:
      try stringIO(b)
      return
    // 0x80, 0x81, 0x83 (and 0x82 outside 64-bit mode) are decoded forms.
    case 0x86, 0x87:
      try decodeModRM()
      let s = b == 0x86 ? 1 : opSize
      let a = try readE(s)
      try writeE(s, getReg(modReg, s))
      setReg(modReg, s, a)
    case 0x8C:
      try decodeModRM()
      let sr = modReg & 7
      if sr > 5 { throw Fault.ud() }
      let v = UInt64(seg[sr].selector)
      if modIsReg { setReg(modRM, opSize, v) } else { try writeE(2, v) }
    case 0x8E:
      try decodeModRM()
      let sr = modReg & 7
      if sr > 5 || sr == CS { throw Fault.ud() }
      try loadSeg(sr, UInt16(truncatingIfNeeded: try readE(2)))
      if sr == SS {
        interruptShadow = true
        movSSBlocking = true
        stop = true
      }
    case 0x8F:
      let mpos = ipos
      try decodeModRM()
      if modReg & 7 != 0 { throw Fault.ud() }
      let s = stackOpSize
      let sp0 = r[4]
      let v = try pop(s)
      do {
        // The destination address is computed with the incremented RSP: decode again.
        ipos = mpos
        try decodeModRM()
        try writeE(s, v)
      } catch {
        r[4] = sp0
        throw error
      }
    case 0x90:
      if rex & 1 != 0 {
        let a = getReg(8, opSize)
        setReg(8, opSize, getReg(0, opSize))
        setReg(0, opSize, a)
      } else if rep == 0xF3 && yieldOnPause {
        // PAUSE in a spin loop: give the turn to another vCPU (pause-loop exiting).
        stats.pauseYields &+= 1
        exit(.interrupted)
      }  // else NOP
    case 0x91...0x97:
      let i = Int(b & 7) | (Int(rex & 1) << 3)
      let a = getReg(i, opSize)
      setReg(i, opSize, getReg(0, opSize))
      setReg(0, opSize, a)
    case 0x9A:
      if mode64 { throw Fault.ud() }
      let off = try imm(opSize)
      let sel = UInt16(truncatingIfNeeded: try fetch16())
      try farCall(sel, off, opSize)
      return
    case 0x9B:
      if cr0 & (CR0.ts | CR0.mp) == (CR0.ts | CR0.mp) { throw Fault.nm() }
      try x87PendingCheck()  // FWAIT: #MF for a pending unmasked x87 exception (X87.swift)
    case 0x9C:
      try pushf()
    case 0x9D:
      try popf()
    case 0x9E:
      if mode64 && cpuid.lookup(leaf: 0x8000_0001, subleaf: 0).ecx & 1 == 0 { throw Fault.ud() }
      setStatus((r[0] >> 8) & 0xD5, mask: RFLAGS.cf | RFLAGS.pf | RFLAGS.af | RFLAGS.zf | RFLAGS.sf)
    case 0x9F:
      if mode64 && cpuid.lookup(leaf: 0x8000_0001, subleaf: 0).ecx & 1 == 0 { throw Fault.ud() }
      let f = (flags & 0xD5) | 2
      r[0] = (r[0] & ~0xFF00) | (f << 8)
    case 0xA0, 0xA1, 0xA2, 0xA3:
      let off = adSize == 8 ? try fetch64() : try imm(adSize)
      let s = b & 1 == 0 ? 1 : opSize
      let sg = segOvr >= 0 ? segOvr : DS
      if b < 0xA2 {
        setReg(0, s, try readMem(sg, off, s))
      } else {
        try writeMem(sg, off, s, getReg(0, s))
      }
    case 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF:
      try stringOp(b)
      return
    case 0xC4, 0xC5:
      if try isVEX() {
        try execVEX(b)  // VEX.swift
        rip = nextRIP
        return
      }
      if mode64 { throw Fault.ud() }
      try decodeModRM()
      if modIsReg { throw Fault.ud() }
      try loadFarPointer(b == 0xC4 ? ES : DS)
    case 0xC8:
      try enter()
    case 0xCA, 0xCB:
      let n = b == 0xCA ? try fetch16() : 0
      try farReturn(opSize, pop: n)
      return
    case 0xCC:
      rip = nextRIP
      raise(3, 0, false, soft: true)
      return
    case 0xCD:
      let v = try fetch8()
      rip = nextRIP
      if !protectedMode || rfl & RFLAGS.vm == 0 {
        raise(UInt16(v), 0, false, soft: true)
      } else {
        throw Fault.gp(0)
      }
      return
    case 0xCE:
      if mode64 { throw Fault.ud() }
      if cond(0) {
        rip = nextRIP
        raise(4, 0, false, soft: true)
        return
      }
    case 0xCF:
      try iret()
      return
    case 0xD4:
      if mode64 { throw Fault.ud() }
      let base = UInt64(try fetch8())
      if base == 0 { throw Fault.de() }
      let al = r[0] & 0xFF
      let v = ((al / base) << 8) | (al % base)
      setReg(0, 2, v)
      setLogicFlags(1, v & 0xFF)
    case 0xD5:
      if mode64 { throw Fault.ud() }
      let base = UInt64(try fetch8())
      let v = ((r[0] & 0xFF) &+ ((r[0] >> 8) & 0xFF) &* base) & 0xFF
      setReg(0, 2, v)
      setLogicFlags(1, v)
    case 0xD6:  // SALC: AL = CF ? 0xFF : 0 (undocumented; kvm-unit-tests realmode uses it)
      if mode64 { throw Fault.ud() }
      setReg(0, 1, statusFlags() & RFLAGS.cf != 0 ? 0xFF : 0)
    case 0xD7:
      let sg = segOvr >= 0 ? segOvr : DS
      let off = (getReg(3, adSize) &+ (r[0] & 0xFF)) & sizeMask(adSize)
      setReg(0, 1, try readMem(sg, off, 1))
    case 0xD8...0xDF:
      try execX87(b)  // X87.swift
    case 0xE0, 0xE1, 0xE2:
      let d = sext(UInt64(try fetch8()), 1)
      let c = (getReg(1, adSize) &- 1) & sizeMask(adSize)
      var take = c != 0
      if b == 0xE0 { take = take && !cond(4) } else if b == 0xE1 { take = take && cond(4) }
      let t = branchTarget(d)
      // A target past CS's limit faults with ECX not yet decremented.
      if take && nearTargetPastLimit(t) { throw Fault.gp(0) }
      setReg(1, adSize == 2 ? 2 : adSize, c)
      if adSize == 4 && mode64 { r[1] = c }
      if take {
        rip = t
        return
      }
    case 0xE3:
      let d = sext(UInt64(try fetch8()), 1)
      if getReg(1, adSize) == 0 {
        let t = branchTarget(d)
        if nearTargetPastLimit(t) { throw Fault.gp(0) }
        rip = t
        return
      }
    case 0xE4, 0xE5, 0xEC, 0xED:
      let port = b < 0xE8 ? UInt16(try fetch8()) : UInt16(truncatingIfNeeded: r[2])
      let s = b & 1 == 0 ? 1 : (opSize == 2 ? 2 : 4)
      try portIn(port, s)
    case 0xE6, 0xE7, 0xEE, 0xEF:
      let port = b < 0xE8 ? UInt16(try fetch8()) : UInt16(truncatingIfNeeded: r[2])
      let s = b & 1 == 0 ? 1 : (opSize == 2 ? 2 : 4)
      try checkIOPL()
      if drActive { drNoteIO(port, s) }
      exit(
        .portIO(
          PortIOAccess(
            port: port, size: s, direction: .out, value: UInt32(truncatingIfNeeded: getReg(0, s)))))
    case 0xEA:
      if mode64 { throw Fault.ud() }
      let off = try imm(opSize)
      let sel = UInt16(truncatingIfNeeded: try fetch16())
      try farJump(sel, off, opSize)
      return
    case 0xF1:
      rip = nextRIP
      raise(1, 0, false, soft: true, icebp: true)
      return
    case 0xF4:
      if cpl != 0 { throw Fault.gp(0) }
      rip = nextRIP
      halted = true
      stop = true
      return
    case 0xF5:
      let f = statusFlags()
      setStatus(f ^ RFLAGS.cf)
    case 0xF8: setStatus(0, mask: RFLAGS.cf)
    case 0xF9: setStatus(RFLAGS.cf, mask: RFLAGS.cf)
    case 0xFA:
      try checkIOPLForIF()
      rfl &= ~RFLAGS.if
    case 0xFB:
      try checkIOPLForIF()
      if rfl & RFLAGS.if == 0 {
        rfl |= RFLAGS.if
        interruptShadow = true
        stop = true
      }
    case 0xFC: rfl &= ~RFLAGS.df
    case 0xFD: rfl |= RFLAGS.df
    case 0xFF:
      try decodeModRM()
      try group5()
      return
    default:
      // 0x62 BOUND, 0x9A/0xEA in 64-bit, VEX/EVEX... : not implemented → #UD.
      throw Fault.ud()
    }
    rip = (startRIP &+ UInt64(ipos)) & codeMask
  }

  /// LOCK is valid only on read-modify-write instructions with a memory destination.
  func checkLock(_ b: UInt8) throws(Fault) {
    var ok = false
    var ext = -1
    let m: UInt8
    if b == 0x0F {
      let b2 = try fetch8()
      m = try fetch8()
      ipos -= 2
      switch b2 {
      case 0xAB, 0xB3, 0xBB, 0xB0, 0xB1, 0xC0, 0xC1: ok = true
      case 0xBA: ok = (m >> 3) & 7 >= 4
      case 0xC7: ok = (m >> 3) & 7 == 1
      default: ok = false
      }
    } else {
      m = try fetch8()
      ipos -= 1
      ext = Int((m >> 3) & 7)
      switch b {
      case 0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31:
        ok = true
      case 0x80, 0x81, 0x82, 0x83: ok = ext != 7
      case 0x86, 0x87: ok = true
      case 0xF6, 0xF7: ok = ext == 2 || ext == 3
      case 0xFE, 0xFF: ok = ext <= 1
      default: ok = false
      }
    }
    if !ok || m >= 0xC0 { throw Fault.ud() }
  }

  // MARK: Groups

  /// F6/F7 /4-/7 (`op`) with source operand `v`: MUL, IMUL, DIV, IDIV (the decoded form
  /// DC.mulDiv).
  func mulDiv(_ op: UInt8, _ v: UInt64, _ s: Int) throws(Fault) {
    switch op {
    case 4, 5:
      let signed = op == 5
      let a = getReg(0, s)
      var lo: UInt64
      var hi: UInt64
      var overflow: Bool
      if signed {
        let x = Int64(bitPattern: sext(a, s))
        let y = Int64(bitPattern: sext(v, s))
        if s == 8 {
          let p = x.multipliedFullWidth(by: y)
          lo = p.low
          hi = UInt64(bitPattern: p.high)
          overflow = !((hi == 0 && lo >> 63 == 0) || (hi == ~0 && lo >> 63 == 1))
        } else {
          let p = x &* y
          lo = UInt64(bitPattern: p) & sizeMask(s)
          hi = (UInt64(bitPattern: p) >> UInt64(s * 8)) & sizeMask(s)
          overflow = sext(UInt64(bitPattern: p), s) != UInt64(bitPattern: p)
        }
      } else {
        if s == 8 {
          let p = a.multipliedFullWidth(by: v)
          lo = p.low
          hi = p.high
        } else {
          let p = a &* v
          lo = p & sizeMask(s)
          hi = (p >> UInt64(s * 8)) & sizeMask(s)
        }
        overflow = hi != 0
      }
      if s == 1 {
        setReg(0, 2, lo | (hi << 8))
      } else {
        setReg(0, s, lo)
        setReg(2, s, hi)
      }
      mulFlags(lo, s, overflow)
    default:
      try divide(v, s, signed: op == 7)
    }
  }

  @_transparent func mulFlags(_ lo: UInt64, _ s: Int, _ overflow: Bool) {
    var f = parityFlag(lo)
    if lo & signBit(s) != 0 { f |= RFLAGS.sf }
    if lo == 0 { f |= RFLAGS.zf }
    if overflow { f |= RFLAGS.cf | RFLAGS.of }
    setStatus(f)
  }

  /// Two/three-operand IMUL (truncated result).
  @_transparent func imul2(_ a: UInt64, _ b: UInt64, _ s: Int) -> UInt64 {
    let x = Int64(bitPattern: sext(a, s))
    let y = Int64(bitPattern: sext(b, s))
    let lo: UInt64
    let overflow: Bool
    if s == 8 {
      let p = x.multipliedFullWidth(by: y)
      lo = p.low
      overflow = !((p.high == 0 && lo >> 63 == 0) || (p.high == -1 && lo >> 63 == 1))
    } else {
      let p = UInt64(bitPattern: x &* y)
      lo = p & sizeMask(s)
      overflow = sext(p, s) != p
    }
    mulFlags(lo, s, overflow)
    return lo
  }

  func divide(_ d: UInt64, _ s: Int, signed: Bool) throws(Fault) {
    if d == 0 { throw Fault.de() }
    let bits = UInt64(s * 8)
    let m = sizeMask(s)
    var lo: UInt64
    var hi: UInt64
    if s == 1 {
      lo = r[0] & 0xFF
      hi = (r[0] >> 8) & 0xFF
    } else {
      lo = getReg(0, s)
      hi = getReg(2, s)
    }
    var q: UInt64
    var rem: UInt64
    if !signed {
      if s == 8 {
        if hi >= d { throw Fault.de() }
        let res = d.dividingFullWidth((high: hi, low: lo))
        q = res.quotient
        rem = res.remainder
      } else {
        let n = (hi << bits) | lo
        q = n / d
        rem = n % d
        if q > m { throw Fault.de() }
      }
    } else {
      let neg = hi & signBit(s) != 0
      let dneg = d & signBit(s) != 0
      let ad = dneg ? (0 &- sext(d, s)) : d  // |divisor| as unsigned 64-bit
      var uq: UInt64
      var ur: UInt64
      if s == 8 {
        var nh = hi
        var nl = lo
        if neg {
          nl = 0 &- lo
          nh = ~hi &+ (lo == 0 ? 1 : 0)
        }
        if nh >= ad { throw Fault.de() }
        let res = ad.dividingFullWidth((high: nh, low: nl))
        uq = res.quotient
        ur = res.remainder
      } else {
        let n = Int64(bitPattern: sext((hi << bits) | lo, s * 2))
        let un = n < 0 ? UInt64(bitPattern: 0 &- n) : UInt64(bitPattern: n)
        uq = un / ad
        ur = un % ad
      }
      // Quotient must fit in the signed destination.
      let qneg = neg != dneg
      let limit: UInt64 = signBit(s)
      if qneg ? uq > limit : uq >= limit { throw Fault.de() }
      q = (qneg ? 0 &- uq : uq) & m
      rem = (neg ? 0 &- ur : ur) & m
    }
    if s == 1 {
      setReg(0, 2, (q & 0xFF) | (rem & 0xFF) << 8)
    } else {
      setReg(0, s, q)
      setReg(2, s, rem)
    }
  }

  /// FF /3 and /5: far CALL/JMP through memory (/0 /1 /2 /4 /6 are decoded forms).
  func group5() throws(Fault) {
    let op = modReg & 7
    if (op != 3 && op != 5) || modIsReg { throw Fault.ud() }
    let a = addr()
    let s = opSize
    let off = try readMem(eaSeg, a, s)
    let sel = UInt16(
      truncatingIfNeeded: try readMem(eaSeg, (a &+ UInt64(s)) & sizeMask(adSize), 2))
    if op == 3 { try farCall(sel, off, s) } else { try farJump(sel, off, s) }
  }

  func enter() throws(Fault) {
    let alloc = try fetch16()
    let level = Int(try fetch8()) & 31
    let s = stackOpSize
    let sp0 = r[4]
    let bp0 = r[5]
    do {
      try push(getReg(5, s), s)
      let frame = r[4] & stackMask
      if level > 0 {
        var bp = getReg(5, stackSize)
        for _ in 1..<max(level, 1) where level > 1 {
          bp = (bp &- UInt64(s)) & stackMask
          try push(try readMem(SS, bp, s), s)
        }
        try push(frame, s)
      }
      let nsp = (r[4] &- alloc) & stackMask
      // Touch the new stack top so a bad allocation faults here, as hardware does.
      _ = try readMem(SS, nsp, 1)
      setReg(5, s, frame)
      setSP(nsp)
    } catch {
      r[4] = sp0
      r[5] = bp0
      throw error
    }
  }

  func bcdAdjust(_ b: UInt8) {
    let f = statusFlags()
    var al = r[0] & 0xFF
    var cfOut = false
    var afOut = false
    switch b {
    case 0x27:  // DAA
      let oldAL = al
      let oldCF = f & RFLAGS.cf != 0
      if al & 0xF > 9 || f & RFLAGS.af != 0 {
        al = (al &+ 6) & 0xFF
        afOut = true
      }
      if oldAL > 0x99 || oldCF {
        al = (al &+ 0x60) & 0xFF
        cfOut = true
      }
    case 0x2F:  // DAS
      let oldAL = al
      let oldCF = f & RFLAGS.cf != 0
      if al & 0xF > 9 || f & RFLAGS.af != 0 {
        if al < 6 { cfOut = true }  // the borrow of AL - 6 (SDM: CF = old CF or borrow)
        al = (al &- 6) & 0xFF
        afOut = true
      }
      if oldAL > 0x99 || oldCF {
        al = (al &- 0x60) & 0xFF
        cfOut = true
      }
    case 0x37, 0x3F:  // AAA / AAS
      var ax = r[0] & 0xFFFF
      if al & 0xF > 9 || f & RFLAGS.af != 0 {
        if b == 0x37 {
          ax = (ax &+ 0x106) & 0xFFFF
        } else {
          ax = ((ax &- 6) & 0xFF) | ((((ax >> 8) &- 1) & 0xFF) << 8)
        }
        afOut = true
        cfOut = true
      }
      ax = (ax & 0xFF0F)
      setReg(0, 2, ax)
      var nf = f & ~(RFLAGS.cf | RFLAGS.af)
      if cfOut { nf |= RFLAGS.cf | RFLAGS.af }
      setStatus(nf)
      return
    default: break
    }
    setReg(0, 1, al)
    var nf = parityFlag(al) | (al == 0 ? RFLAGS.zf : 0) | (al & 0x80 != 0 ? RFLAGS.sf : 0)
    if cfOut { nf |= RFLAGS.cf }
    if afOut { nf |= RFLAGS.af }
    setStatus(nf | (f & RFLAGS.of))
  }

  // MARK: Flags instructions

  var iopl: Int { Int((rfl >> 12) & 3) }

  func pushf() throws(Fault) {
    let s = stackOpSize
    // VM and RF are never pushed as set.
    try push(flags & ~(RFLAGS.vm | RFLAGS.rf), s)
  }

  func popf() throws(Fault) {
    let s = stackOpSize
    let v = try pop(s)
    var mask: UInt64 =
      RFLAGS.status | RFLAGS.tf | RFLAGS.df | RFLAGS.nt | RFLAGS.ac | RFLAGS.id | RFLAGS.if
      | RFLAGS.iopl
    if protectedMode {
      if cpl > 0 { mask &= ~RFLAGS.iopl }
      if cpl > iopl { mask &= ~RFLAGS.if }
    }
    if s == 2 { mask &= 0xFFFF }
    let old = flags
    let wasIF = old & RFLAGS.if
    flags = (old & ~mask) | (v & mask)
    if (rfl & RFLAGS.if != 0 && wasIF == 0) || rfl & RFLAGS.tf != 0 { stop = true }
  }

  func checkIOPLForIF() throws(Fault) {
    if protectedMode && cpl > iopl { throw Fault.gp(0) }
  }

  func checkIOPL() throws(Fault) {
    if protectedMode && (cpl > iopl || rfl & RFLAGS.vm != 0) { throw Fault.gp(0) }
  }

  // MARK: Port I/O

  func portIn(_ port: UInt16, _ s: Int) throws(Fault) {
    try checkIOPL()
    if let v = takeIOValue(port, s) {
      setReg(0, s, v & sizeMask(s))
      if drActive { drNoteIO(port, s) }
      return
    }
    try exitForIn(port, s)
  }

  /// The value the VMM completed for an IN of this port and size, consumed once;
  /// a value completed for another access is never handed out.
  @inline(__always) func takeIOValue(_ port: UInt16, _ s: Int) -> UInt64? {
    guard let v = ioValue, ioKey == UInt32(port) | UInt32(s) << 16 else { return nil }
    ioValue = nil
    return v
  }

  func exitForIn(_ port: UInt16, _ s: Int) throws(Fault) -> Never {
    pendingIn = true
    ioValue = nil
    ioKey = UInt32(port) | UInt32(s) << 16
    pendingExit = .portIO(PortIOAccess(port: port, size: s, direction: .in))
    throw Fault.exit
  }

  /// INS/OUTS: one element per exit; REP resumes at the same instruction.
  func stringIO(_ b: UInt8) throws(Fault) {
    try checkIOPL()
    let s = b & 1 == 0 ? 1 : (opSize == 2 ? 2 : 4)
    let am = sizeMask(adSize)
    if rep != 0 && getReg(1, adSize) == 0 {
      rip = nextRIP
      return
    }
    let port = UInt16(truncatingIfNeeded: r[2])
    let delta: UInt64 = rfl & RFLAGS.df != 0 ? 0 &- UInt64(s) : UInt64(s)
    if b <= 0x6D {
      let di = getReg(7, adSize)
      guard let v = takeIOValue(port, s) else {
        // Probe the destination as a write so its fault comes before the device access.
        try probeWrite(ES, di, s)
        try exitForIn(port, s)
      }
      try writeMem(ES, di, s, v & sizeMask(s))
      setIndex(7, (di &+ delta) & am)
      if drActive { drNoteIO(port, s) }
    } else {
      let si = getReg(6, adSize)
      let v = try readMem(segOvr >= 0 ? segOvr : DS, si, s)
      setIndex(6, (si &+ delta) & am)
      if drActive { drNoteIO(port, s) }
      exit(
        .portIO(
          PortIOAccess(port: port, size: s, direction: .out, value: UInt32(truncatingIfNeeded: v))))
    }
    if rep != 0 {
      let c = (getReg(1, adSize) &- 1) & am
      setIndex(1, c)
      rip = c == 0 ? nextRIP : startRIP
    } else {
      rip = nextRIP
    }
    stop = true
  }

  @inline(__always) func setIndex(_ i: Int, _ v: UInt64) {
    if adSize == 2 { r[i] = (r[i] & ~0xFFFF) | v } else { r[i] = v }
  }

  // MARK: String instructions

  func stringOp(_ b: UInt8) throws(Fault) {
    let s = b & 1 == 0 ? 1 : opSize
    let am = sizeMask(adSize)
    let delta: UInt64 = rfl & RFLAGS.df != 0 ? 0 &- UInt64(s) : UInt64(s)
    let srcSeg = segOvr >= 0 ? segOvr : DS
    if rep == 0 {
      try stringElement(b, s, srcSeg, delta, am)
      rip = nextRIP
      return
    }
    // REP: bounded chunks so a huge count cannot stall the run loop.
    let isCmp = b == 0xA6 || b == 0xA7 || b == 0xAE || b == 0xAF
    var budget = 65536
    while true {
      let c = getReg(1, adSize)
      if c == 0 {
        rip = nextRIP
        return
      }
      if budget <= 0 || stop {
        rip = startRIP  // resume the REP later (interrupt window, MMIO exit)
        return
      }
      budget &-= 1
      if b == 0xAA || b == 0xAB, let n = try fastStos(s, c, delta) {
        budget &-= n
        continue
      }
      if b == 0xA4 || b == 0xA5, let n = try fastMovs(s, c, delta, srcSeg) {
        budget &-= n
        continue
      }
      try stringElement(b, s, srcSeg, delta, am)
      setIndex(1, (c &- 1) & am)
      mmioElementRetired()
      if isCmp {
        let z = cond(4)
        if (rep == 0xF3 && !z) || (rep == 0xF2 && z) {
          rip = nextRIP
          return
        }
      }
    }
  }

  @inline(__always)
  func stringElement(_ b: UInt8, _ s: Int, _ srcSeg: Int, _ delta: UInt64, _ am: UInt64)
    throws(Fault)
  {
    switch b {
    case 0xA4, 0xA5:
      let si = getReg(6, adSize)
      let di = getReg(7, adSize)
      let v = try readMem(srcSeg, si, s)
      try writeMem(ES, di, s, v)
      setIndex(6, (si &+ delta) & am)
      setIndex(7, (di &+ delta) & am)
    case 0xA6, 0xA7:
      let si = getReg(6, adSize)
      let di = getReg(7, adSize)
      let a = try readMem(srcSeg, si, s)
      let c = try readMem(ES, di, s)
      _ = alu(7, a, c, s)
      setIndex(6, (si &+ delta) & am)
      setIndex(7, (di &+ delta) & am)
    case 0xAA, 0xAB:
      let di = getReg(7, adSize)
      try writeMem(ES, di, s, getReg(0, s))
      setIndex(7, (di &+ delta) & am)
    case 0xAC, 0xAD:
      let si = getReg(6, adSize)
      setReg(0, s, try readMem(srcSeg, si, s))
      setIndex(6, (si &+ delta) & am)
    default:  // SCAS
      let di = getReg(7, adSize)
      let c = try readMem(ES, di, s)
      _ = alu(7, getReg(0, s), c, s)
      setIndex(7, (di &+ delta) & am)
    }
  }

  /// REP STOS within one RAM page (forward only): bulk store. Returns elements done or nil.
  @inline(__always) func fastStos(_ s: Int, _ c: UInt64, _ delta: UInt64) throws(Fault) -> Int? {
    if rfl & RFLAGS.df != 0 || adSize == 2 || segWriteFlat & (1 << ES) == 0 { return nil }
    let di = getReg(7, adSize)
    let lin = linear(ES, di)
    let room = (4096 - Int(lin & 0xFFF)) / s
    if room < 2 || lin & UInt64(s - 1) != 0 { return nil }
    let n = Int(min(UInt64(room), c))
    // Translate via a normal write (fills the TLB), then bulk-fill the rest of the page.
    try writeLin(lin, s, getReg(0, s))
    let slot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    guard tlb.wtag[slot] == (lin & ~0xFFF) | userKey else {
      setIndex(7, (di &+ delta) & sizeMask(adSize))
      setIndex(1, (c &- 1) & sizeMask(adSize))
      return 1
    }
    let p = UnsafeMutableRawPointer(bitPattern: tlb.wadd[slot] &+ Int(bitPattern: UInt(lin)))
      .unsafelyUnwrapped
    let v = getReg(0, s)
    switch s {
    case 1: p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: v), count: n)
    case 2:
      for i in 0..<n {
        p.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i * 2, as: UInt16.self)
      }
    case 4:
      for i in 0..<n {
        p.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self)
      }
    default: for i in 0..<n { p.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
    }
    let bytes = UInt64(n * s)
    setIndex(7, (di &+ bytes) & sizeMask(adSize))
    setIndex(1, (c &- UInt64(n)) & sizeMask(adSize))
    return n
  }

  /// REP MOVS forward within one source and one destination RAM page.
  @inline(__always)
  func fastMovs(_ s: Int, _ c: UInt64, _ delta: UInt64, _ srcSeg: Int) throws(Fault) -> Int? {
    if rfl & RFLAGS.df != 0 || adSize == 2 { return nil }
    // Segments with limits take the element-by-element path, which checks them.
    if segWriteFlat & (1 << ES) == 0 || segReadFlat & (1 << srcSeg) == 0 { return nil }
    let si = getReg(6, adSize)
    let di = getReg(7, adSize)
    let ls = linear(srcSeg, si)
    let ld = linear(ES, di)
    let room = min(4096 - Int(ls & 0xFFF), 4096 - Int(ld & 0xFFF)) / s
    if room < 2 { return nil }
    let n = Int(min(UInt64(room), c))
    // One element the normal way: faults, TLB fills, MMIO all handled there.
    let v = try readLin(ls, s)
    try writeLin(ld, s, v)
    let ss = Int(truncatingIfNeeded: ls >> 12) & TLB.mask
    let ds = Int(truncatingIfNeeded: ld >> 12) & TLB.mask
    let am = sizeMask(adSize)
    guard n > 1, !stop, tlb.rtag[ss] == (ls & ~0xFFF) | userKey,
      tlb.wtag[ds] == (ld & ~0xFFF) | userKey
    else {
      setIndex(6, (si &+ UInt64(s)) & am)
      setIndex(7, (di &+ UInt64(s)) & am)
      setIndex(1, (c &- 1) & am)
      return 1
    }
    let ps = UnsafeRawPointer(bitPattern: tlb.radd[ss] &+ Int(bitPattern: UInt(ls)))
      .unsafelyUnwrapped
    let pd = UnsafeMutableRawPointer(bitPattern: tlb.wadd[ds] &+ Int(bitPattern: UInt(ld)))
      .unsafelyUnwrapped
    let bytes = n * s
    // Overlap with dst ahead of src by less than the length must replicate element-wise.
    let dist = Int(bitPattern: UInt(bitPattern: pd - UnsafeMutableRawPointer(mutating: ps)))
    if dist > 0 && dist < bytes {
      var i = s
      while i < bytes {
        switch s {
        case 1:
          pd.storeBytes(
            of: ps.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
        case 2:
          pd.storeBytes(
            of: ps.loadUnaligned(fromByteOffset: i, as: UInt16.self), toByteOffset: i,
            as: UInt16.self)
        case 4:
          pd.storeBytes(
            of: ps.loadUnaligned(fromByteOffset: i, as: UInt32.self), toByteOffset: i,
            as: UInt32.self)
        default:
          pd.storeBytes(
            of: ps.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i,
            as: UInt64.self)
        }
        i += s
      }
    } else {
      (pd + s).copyMemory(from: ps + s, byteCount: bytes - s)
    }
    setIndex(6, (si &+ UInt64(bytes)) & am)
    setIndex(7, (di &+ UInt64(bytes)) & am)
    setIndex(1, (c &- UInt64(n)) & am)
    return n
  }
}
