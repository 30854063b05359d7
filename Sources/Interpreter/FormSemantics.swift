import X86

// The semantics of the decoded forms (DecodedForms.swift): the one definition that both
// the decode cache and the full decoder run. Result and flag computations (`alu`,
// `shift`, `incdec`, `imul2`, `cond`) are the same functions the other instructions use
// (Flags.swift, Execute.swift).

extension InterpreterCPU {
  /// Effective offset of a decoded memory operand; `next` is the address of the next
  /// instruction (RIP-relative operands). Registers are read now, as each access needs.
  @inline(__always) func effectiveAddress(_ e: UnsafePointer<DecodedInsn>, _ next: UInt64)
    -> UInt64
  {
    var a = e.pointee.disp
    if e.pointee.ripRel {
      a &+= next
    } else {
      if e.pointee.rm != 0xFF { a &+= r[Int(e.pointee.rm)] }
      if e.pointee.index != 0xFF { a &+= r[Int(e.pointee.index)] &<< UInt64(e.pointee.scale) }
    }
    let s = e.pointee.asize
    return s == 8 ? a : s == 4 ? a & 0xFFFF_FFFF : a & 0xFFFF
  }

  /// `effectiveAddress` while the decoded instruction runs (RIP is still its start).
  @inline(__always) func formAddress(_ e: UnsafePointer<DecodedInsn>) -> UInt64 {
    effectiveAddress(e, rip &+ UInt64(e.pointee.len))
  }

  @inline(__always) func readOperand(_ e: UnsafePointer<DecodedInsn>, _ s: Int) throws(Fault)
    -> UInt64
  {
    if e.pointee.isReg { return getReg(Int(e.pointee.rm), s) }
    return try readMem(Int(e.pointee.seg), formAddress(e), s)
  }

  @inline(__always) func writeOperand(_ e: UnsafePointer<DecodedInsn>, _ s: Int, _ v: UInt64)
    throws(Fault)
  {
    if e.pointee.isReg {
      setReg(Int(e.pointee.rm), s, v)
      return
    }
    try writeMem(Int(e.pointee.seg), formAddress(e), s, v)
  }

  /// Runs a decoded instruction (RIP at its start).
  @inline(__always) func runDecoded(_ e: UnsafePointer<DecodedInsn>) throws(Fault) {
    startRIP = rip
    ipos = Int(e.pointee.len)
    rex = e.pointee.rex
    // One copy of the handlers per common operand size, so size tests fold away.
    let s = Int(e.pointee.size)
    if s == 8 {
      try runForm(e, 8)
    } else if s == 4 {
      try runForm(e, 4)
    } else {
      try runForm(e, s)
    }
  }

  @_transparent func runForm(_ e: UnsafePointer<DecodedInsn>, _ s: Int) throws(Fault) {
    let end = rip &+ UInt64(e.pointee.len)
    let next = end & codeMask
    switch e.pointee.kind {
    case DC.aluEG:
      let res = alu(Int(e.pointee.op), try readOperand(e, s), getReg(Int(e.pointee.reg), s), s)
      if e.pointee.op != 7 { try writeOperand(e, s, res) }
    case DC.aluGE:
      let res = alu(Int(e.pointee.op), getReg(Int(e.pointee.reg), s), try readOperand(e, s), s)
      if e.pointee.op != 7 { setReg(Int(e.pointee.reg), s, res) }
    case DC.aluAI:
      let res = alu(Int(e.pointee.op), getReg(0, s), e.pointee.imm, s)
      if e.pointee.op != 7 { setReg(0, s, res) }
    case DC.aluEI:
      let res = alu(Int(e.pointee.op), try readOperand(e, s), e.pointee.imm, s)
      if e.pointee.op != 7 { try writeOperand(e, s, res) }
    case DC.test:
      setLogicFlags(s, try readOperand(e, s) & getReg(Int(e.pointee.reg), s))
    case DC.movEG:
      try writeOperand(e, s, getReg(Int(e.pointee.reg), s))
    case DC.movGE:
      setReg(Int(e.pointee.reg), s, try readOperand(e, s))
    case DC.lea:
      setReg(Int(e.pointee.reg), s, formAddress(e))
    case DC.movsxd:
      // Without REX.W, a plain 32-bit move.
      let v = try readOperand(e, 4)
      setReg(Int(e.pointee.reg), s, s == 8 ? sext(v, 4) : v)
    case DC.jcc:
      if cond(Int(e.pointee.op)) {
        let t = branchTarget(end, e.pointee.disp, s)
        if nearTargetPastLimit(t) { throw Fault.gp(0) }
        rip = t
        return
      }
    case DC.jmp:
      let t = branchTarget(end, e.pointee.disp, s)
      if nearTargetPastLimit(t) { throw Fault.gp(0) }
      rip = t
      return
    case DC.call:
      let t = branchTarget(end, e.pointee.disp, s)
      if nearTargetPastLimit(t) { throw Fault.gp(0) }
      try push(next, s)
      rip = t
      return
    case DC.ret:
      let sp0 = r[4]
      let v = try pop(s)
      let t = s == 2 ? v & 0xFFFF : v
      if nearTargetPastLimit(t) {
        r[4] = sp0
        throw Fault.gp(0)
      }
      setSP((r[4] &+ e.pointee.imm) & stackMask)
      rip = t
      return
    case DC.pushR:
      try push(getReg(Int(e.pointee.reg), s), s)
    case DC.popR:
      let v = try pop(s)
      setReg(Int(e.pointee.reg), s, v)
    case DC.movRI:
      setReg(Int(e.pointee.reg), s, e.pointee.imm)
    case DC.shift:
      let c = e.pointee.imm == 0x100 ? r[1] & 0xFF : e.pointee.imm
      let v = try readOperand(e, s)
      try writeOperand(e, s, shift(Int(e.pointee.op), v, c, s))
    case DC.incdec:
      try writeOperand(e, s, incdec(try readOperand(e, s), s, dec: e.pointee.op == 1))
    case DC.not:
      try writeOperand(e, s, ~(try readOperand(e, s)) & sizeMask(s))
    case DC.neg:
      // The flags change only once the write succeeded (a faulting NEG leaves them).
      let v = try readOperand(e, s)
      let res = (0 &- v) & sizeMask(s)
      try writeOperand(e, s, res)
      setFlags(.sub, s, res, 0, v)
    case DC.callInd:
      let v = try readOperand(e, s)
      let t = s == 2 ? v & 0xFFFF : v
      if nearTargetPastLimit(t) { throw Fault.gp(0) }
      try push(next, s)
      rip = t
      return
    case DC.jmpInd:
      let v = try readOperand(e, s)
      let t = s == 2 ? v & 0xFFFF : v
      if nearTargetPastLimit(t) { throw Fault.gp(0) }
      rip = t
      return
    case DC.pushE:
      try push(try readOperand(e, s), s)
    case DC.movzx:
      setReg(Int(e.pointee.reg), s, try readOperand(e, Int(e.pointee.op)))
    case DC.movsx:
      let ss = Int(e.pointee.op)
      setReg(Int(e.pointee.reg), s, sext(try readOperand(e, ss), ss) & sizeMask(s))
    case DC.imul:
      setReg(Int(e.pointee.reg), s, imul2(getReg(Int(e.pointee.reg), s), try readOperand(e, s), s))
    case DC.cmov:
      let v = try readOperand(e, s)
      if cond(Int(e.pointee.op)) {
        setReg(Int(e.pointee.reg), s, v)
      } else if s == 4 {
        r[Int(e.pointee.reg)] &= 0xFFFF_FFFF  // a 32-bit destination is zero-extended anyway
      }
    case DC.setcc:
      try writeOperand(e, 1, cond(Int(e.pointee.op)) ? 1 : 0)
    case DC.testI:
      setLogicFlags(s, try readOperand(e, s) & e.pointee.imm)
    case DC.movEI:
      try writeOperand(e, s, e.pointee.imm)
    case DC.leave:
      let sp = r[5] & stackMask
      let v = try readMem(SS, sp, s)
      setSP(sp &+ UInt64(s))
      setReg(5, s, v)
    case DC.cmpxchg:
      // One vCPU thread runs every vCPU, so LOCK needs no host atomics.
      let d = try readOperand(e, s)
      let acc = getReg(0, s)
      _ = alu(7, acc, d, s)
      if acc == d {
        try writeOperand(e, s, getReg(Int(e.pointee.reg), s))
      } else {
        try writeOperand(e, s, d)
        setReg(0, s, d)
      }
    case DC.xadd:
      let d = try readOperand(e, s)
      let sum = alu(0, d, getReg(Int(e.pointee.reg), s), s)
      if e.pointee.isReg {
        setReg(Int(e.pointee.reg), s, d)
        setReg(Int(e.pointee.rm), s, sum)  // XADD r, r: the sum wins
      } else {
        try writeOperand(e, s, sum)
        setReg(Int(e.pointee.reg), s, d)
      }
    case DC.cbw:
      switch s {
      case 2: setReg(0, 2, sext(r[0], 1))
      case 4: setReg(0, 4, sext(r[0], 2))
      default: r[0] = sext(r[0], 4)
      }
    case DC.cwd:
      setReg(2, s, getReg(0, s) & signBit(s) != 0 ? ~0 : 0)
    case DC.mulDiv:
      try mulDiv(e.pointee.op, try readOperand(e, s), s)
    default:  // DC.nop
      break
    }
    rip = next
  }
}
