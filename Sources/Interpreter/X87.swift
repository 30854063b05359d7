import CX86FP
import X86

/// An 80-bit extended-precision register image (64-bit significand with the
/// explicit integer bit, then sign and 15-bit exponent), as in FXSAVE.
struct F80 {
  var m: UInt64
  var se: UInt16
  static let indefinite = F80(m: 0xC000_0000_0000_0000, se: 0xFFFF)
  static let zero = F80(m: 0, se: 0)
  var exponent: Int { Int(se & 0x7FFF) }
  var negative: Bool { se & 0x8000 != 0 }
}

// x87 state layout: `fpuRegs` holds ST(0)..ST(7) in stack order (16 bytes
// each, the FXSAVE image), so FXSAVE/FXRSTOR copy it as is. TOP is in fpuSW
// bits 13:11, `fpuTW` is the abridged tag (bit p = physical register p valid).
// Push and pop rotate the image. Arithmetic runs on the host x87 (CX86FP)
// with the guest control word, so precision and rounding control, flags and
// NaN rules are the hardware's.

let fpuIE: UInt16 = 0x01
let fpuDE: UInt16 = 0x02
let fpuZE: UInt16 = 0x04
let fpuSF: UInt16 = 0x40
let fpuC0: UInt16 = 0x100
let fpuC1: UInt16 = 0x200
let fpuC2: UInt16 = 0x400
let fpuC3: UInt16 = 0x4000
let fpuCC: UInt16 = 0x4700

extension InterpreterCPU {
  // MARK: Stack

  @inline(__always) var x87Top: Int { Int(fpuSW >> 11) & 7 }
  @inline(__always) func x87SetTop(_ t: Int) {
    fpuSW = (fpuSW & ~0x3800) | UInt16((t & 7) << 11)
  }
  @inline(__always) func stValid(_ i: Int) -> Bool {
    (fpuTW >> UInt8((x87Top &+ i) & 7)) & 1 != 0
  }
  @inline(__always) func stSetTag(_ i: Int, _ valid: Bool) {
    let bit = UInt8(1) << UInt8((x87Top &+ i) & 7)
    if valid { fpuTW |= bit } else { fpuTW &= ~bit }
  }
  @inline(__always) func stGet(_ i: Int) -> F80 {
    F80(
      m: fpuRegs.load(fromByteOffset: (i & 7) &* 16, as: UInt64.self),
      se: fpuRegs.load(fromByteOffset: (i & 7) &* 16 &+ 8, as: UInt16.self))
  }
  @inline(__always) func stPut(_ i: Int, _ v: F80) {
    fpuRegs.storeBytes(of: v.m, toByteOffset: (i & 7) &* 16, as: UInt64.self)
    fpuRegs.storeBytes(of: v.se, toByteOffset: (i & 7) &* 16 &+ 8, as: UInt16.self)
  }
  /// Writes ST(i) and marks it valid.
  @inline(__always) func stSet(_ i: Int, _ v: F80) {
    stPut(i, v)
    stSetTag(i, true)
  }

  /// MMX register i read before the MMX transition (physical Ri = ST((i - TOP) & 7)).
  @inline(__always) func mmGetST(_ i: Int) -> UInt64 {
    fpuRegs.load(fromByteOffset: ((i &- x87Top) & 7) &* 16, as: UInt64.self)
  }

  /// Rotates the image: `by` > 0 moves ST(j+by) to ST(j) (a pop by `by`).
  func x87Rotate(_ by: Int) {
    let n = by & 7
    if n == 0 { return }
    var tmp = [UInt64](repeating: 0, count: 16)
    for j in 0..<8 {
      let k = (j + n) & 7
      tmp[j * 2] = fpuRegs.load(fromByteOffset: k * 16, as: UInt64.self)
      tmp[j * 2 + 1] = fpuRegs.load(fromByteOffset: k * 16 + 8, as: UInt64.self)
    }
    for j in 0..<16 { fpuRegs.storeBytes(of: tmp[j], toByteOffset: j * 8, as: UInt64.self) }
  }

  /// Makes TOP 0 (the image then lists the physical registers R0..R7).
  func x87NormalizeTop() {
    let t = x87Top
    if t == 0 { return }
    x87Rotate(8 - t)
    x87SetTop(0)
  }

  func x87Pop() {
    stSetTag(0, false)
    x87Rotate(1)
    x87SetTop(x87Top &+ 1)
  }

  /// Pushes v (overflow: ST(7) in use gives #IS; the masked response pushes the indefinite).
  func x87Push(_ v: F80) -> Bool {
    if stValid(7) {
      if !x87Exception(fpuIE | fpuSF | fpuC1, cc: fpuC1) { return false }
      x87Rotate(-1)
      x87SetTop(x87Top &- 1)
      stSet(0, .indefinite)
      return true
    }
    x87Rotate(-1)
    x87SetTop(x87Top &- 1)
    stSet(0, v)
    return true
  }

  /// Records exception flags (and condition codes `cc` from `sw`). Returns
  /// true when the result should be written (no unmasked IE/DE/ZE).
  @discardableResult
  func x87Exception(_ sw: UInt16, cc: UInt16) -> Bool {
    fpuSW = (fpuSW & ~cc) | (sw & cc)
    let exc = sw & 0x7F
    fpuSW |= exc
    let unmasked = exc & 0x3F & ~fpuCW
    if unmasked != 0 {
      fpuSW |= 0x8080  // ES and B: #MF at the next waiting x87 instruction
      return unmasked & (fpuIE | fpuDE | fpuZE) == 0
    }
    return true
  }

  /// Pushes the indefinite as the masked response to a stack underflow (no overflow check).
  func x87PushIndefinite() {
    x87Rotate(-1)
    x87SetTop(x87Top &- 1)
    stSet(0, .indefinite)
  }

  /// Stack underflow on reading an empty register. Returns true when the
  /// masked response (the indefinite) should be used.
  func x87Underflow() -> Bool {
    x87Exception(fpuIE | fpuSF, cc: fpuC1)
  }

  /// #MF for a pending unmasked x87 exception (waiting instructions).
  @inline(__always) func x87PendingCheck() throws(Fault) {
    if fpuSW & 0x80 != 0 { throw Fault(vector: 16, code: 0, hasCode: false) }
  }

  func x87RecomputeES() {
    if fpuSW & 0x3F & ~fpuCW != 0 { fpuSW |= 0x8080 } else { fpuSW &= ~0x8080 }
  }

  // MARK: Host operations

  /// Runs a host x87 operation on a and b; returns the status bits.
  @inline(__always)
  func x87Host(_ op: Int32, _ a: inout F80, _ b: inout F80, _ aux: inout UInt64, imm: Int = 0)
    -> UInt16
  {
    var x = a
    var y = b
    var z = aux
    let sw = withUnsafeMutableBytes(of: &x) { xp in
      withUnsafeMutableBytes(of: &y) { yp in
        xf_x87(
          op, fpuCW, fpuSW, xp.baseAddress?.assumingMemoryBound(to: UInt8.self),
          yp.baseAddress?.assumingMemoryBound(to: UInt8.self), &z, Int32(imm))
      }
    }
    a = x
    b = y
    aux = z
    return sw
  }

  /// ST(dst) = ST(dst) op v, with op a host binary operation.
  @discardableResult
  func x87Arith(_ op: Int32, dst: Int, _ v: F80) -> Bool {
    var a = stGet(dst)
    var b = v
    var z: UInt64 = 0
    let sw = x87Host(op, &a, &b, &z)
    if x87Exception(sw, cc: fpuCC) {
      stSet(dst, a)
      return true
    }
    return false
  }

  /// Loads a memory operand of the given kind (0 m32fp, 1 m64fp, 2 m16int,
  /// 3 m32int, 4 m64int) as F80. Returns nil for an unmasked exception.
  func x87LoadMem(_ kind: Int) throws(Fault) -> F80? {
    let sizes = [4, 8, 2, 4, 8]
    let ops = [XF87_LD32, XF87_LD64, XF87_ILD16, XF87_ILD32, XF87_ILD64]
    var raw = try readMem(eaSeg, addr(), sizes[kind])
    var a = F80.zero
    var b = F80.zero
    let sw = x87Host(Int32(ops[kind]), &a, &b, &raw)
    x87Exception(sw, cc: fpuCC)
    // An unmasked invalid operation (SNaN) loads nothing; an unmasked denormal still loads.
    if sw & fpuIE & ~fpuCW != 0 { return nil }
    return a
  }

  // MARK: Dispatch (D8-DF)

  func execX87(_ b: UInt8) throws(Fault) {
    try decodeModRM()
    if cr0 & (CR0.em | CR0.ts) != 0 { throw Fault.nm() }
    let r = modReg & 7
    if modIsReg {
      let i = modRM & 7
      try x87Reg(b, r, i)
    } else {
      try x87Mem(b, r)
    }
  }

  /// Arithmetic op for reg field r with ST(0) as destination (D8, memory forms).
  static let x87OpsST0: [Int32] = [
    Int32(XF87_ADD), Int32(XF87_MUL), -1, -1, Int32(XF87_SUB), Int32(XF87_SUBR),
    Int32(XF87_DIV), Int32(XF87_DIVR),
  ]
  /// With ST(i) as destination (DC/DE register forms): the SUB/DIV pairs are swapped.
  static let x87OpsSTi: [Int32] = [
    Int32(XF87_ADD), Int32(XF87_MUL), -1, -1, Int32(XF87_SUBR), Int32(XF87_SUB),
    Int32(XF87_DIVR), Int32(XF87_DIV),
  ]

  func x87Compare(_ op: Int32, _ a: F80, _ b: F80, pops: Int) {
    var x = a
    var y = b
    var z: UInt64 = 0
    let sw = x87Host(op, &x, &y, &z)
    // An unmasked invalid/denormal exception leaves the stack as it was.
    if x87Exception(sw, cc: fpuCC) { for _ in 0..<pops { x87Pop() } }
  }

  /// FCOMI/FUCOMI family: sets ZF PF CF.
  /// FCOMI/FUCOMI family: sets ZF PF CF (also when the invalid exception is unmasked).
  func x87CompareI(_ op: Int32, _ i: Int, pop: Bool) {
    if !stValid(0) || !stValid(i) {
      let masked = x87Underflow()
      setStatus(UInt64(RFLAGS.zf | RFLAGS.pf | RFLAGS.cf))
      if pop && masked { x87Pop() }
      return
    }
    var x = stGet(0)
    var y = stGet(i)
    var f: UInt64 = 0
    let sw = x87Host(op, &x, &y, &f)
    let masked = x87Exception(sw, cc: fpuCC)
    setStatus(f)
    if pop && masked { x87Pop() }
  }

  func x87Reg(_ b: UInt8, _ r: Int, _ i: Int) throws(Fault) {
    let full = 0xC0 | (r << 3) | i
    // Non-waiting control instructions first.
    switch (b, full) {
    case (0xDB, 0xE3):  // FNINIT
      x87NormalizeTop()
      fpuCW = 0x37F
      fpuSW = 0
      fpuTW = 0
      return
    case (0xDB, 0xE2):  // FNCLEX
      fpuSW &= 0x7F00
      return
    case (0xDF, 0xE0):  // FNSTSW AX
      setReg(0, 2, UInt64(fpuSW))
      return
    case (0xDB, 0xE0), (0xDB, 0xE1), (0xDB, 0xE4):  // FENI/FDISI/FSETPM: no-ops
      return
    default: break
    }
    try x87PendingCheck()
    switch b {
    case 0xD8, 0xDC, 0xDE:
      if r == 2 || r == 3 {  // FCOM/FCOMP ST(i) (DC/DE aliases too); DE D9 = FCOMPP
        if b == 0xDE && !(r == 3 && i == 1) { throw Fault.ud() }
        let pops = b == 0xDE ? 2 : (r == 3 ? 1 : 0)
        let other = b == 0xDE ? 1 : i
        if !stValid(0) || !stValid(other) {
          let masked = x87Underflow()
          fpuSW |= fpuC0 | fpuC2 | fpuC3
          if masked { for _ in 0..<pops { x87Pop() } }
          return
        }
        x87Compare(Int32(XF87_COM), stGet(0), stGet(other), pops: pops)
        return
      }
      let toST0 = b == 0xD8
      let dst = toST0 ? 0 : i
      let src = toST0 ? i : 0
      let op = toST0 ? InterpreterCPU.x87OpsST0[r] : InterpreterCPU.x87OpsSTi[r]
      var masked = true
      if !stValid(0) || !stValid(i) {
        masked = x87Underflow()
        if masked { stSet(dst, .indefinite) }
      } else {
        masked = x87Arith(op, dst: dst, stGet(src))
      }
      if b == 0xDE && masked { x87Pop() }
    case 0xD9:
      try x87D9(full, i)
    case 0xDA:
      if full == 0xE9 {  // FUCOMPP
        if !stValid(0) || !stValid(1) {
          let masked = x87Underflow()
          fpuSW |= fpuC0 | fpuC2 | fpuC3
          if masked {
            x87Pop()
            x87Pop()
          }
          return
        }
        x87Compare(Int32(XF87_UCOM), stGet(0), stGet(1), pops: 2)
        return
      }
      if r > 3 { throw Fault.ud() }
      try x87Fcmov(r, i, negate: false)
    case 0xDB:
      switch r {
      case 0...3: try x87Fcmov(r, i, negate: true)
      case 5: x87CompareI(Int32(XF87_UCOMI), i, pop: false)
      case 6: x87CompareI(Int32(XF87_COMI), i, pop: false)
      default: throw Fault.ud()
      }
    case 0xDD:
      switch r {
      case 0:  // FFREE (C1 cleared as the host does; the SDM leaves C0-C3 undefined)
        stSetTag(i, false)
        fpuSW &= ~fpuC1
      case 1:  // FXCH alias
        x87Fxch(i)
      case 2, 3:  // FST/FSTP ST(i)
        if !stValid(0) {
          if !x87Underflow() { return }
          stSet(i, .indefinite)
        } else {
          stSet(i, stGet(0))
          fpuSW &= ~fpuC1
        }
        if r == 3 { x87Pop() }
      case 4, 5:  // FUCOM/FUCOMP
        if !stValid(0) || !stValid(i) {
          let masked = x87Underflow()
          fpuSW |= fpuC0 | fpuC2 | fpuC3
          if r == 5 && masked { x87Pop() }
          return
        }
        x87Compare(Int32(XF87_UCOM), stGet(0), stGet(i), pops: r == 5 ? 1 : 0)
      default: throw Fault.ud()
      }
    case 0xDF:
      switch r {
      case 0:  // FFREEP (undocumented)
        stSetTag(i, false)
        x87Pop()
      case 1: x87Fxch(i)
      case 2, 3:  // FSTP aliases
        if !stValid(0) {
          if !x87Underflow() { return }
          stSet(i, .indefinite)
        } else {
          stSet(i, stGet(0))
        }
        x87Pop()
      case 5: x87CompareI(Int32(XF87_UCOMI), i, pop: true)
      case 6: x87CompareI(Int32(XF87_COMI), i, pop: true)
      default: throw Fault.ud()
      }
    default:
      throw Fault.ud()
    }
  }

  func x87Fxch(_ i: Int) {
    var a = stGet(0)
    var c = stGet(i)
    if !stValid(0) || !stValid(i) {
      if !x87Underflow() { return }
      if !stValid(0) { a = .indefinite }
      if !stValid(i) { c = .indefinite }
    } else {
      fpuSW &= ~fpuC1
    }
    stSet(0, c)
    stSet(i, a)
  }

  func x87Fcmov(_ r: Int, _ i: Int, negate: Bool) throws(Fault) {
    let f = statusFlags()
    var c: Bool
    switch r {
    case 0: c = f & RFLAGS.cf != 0
    case 1: c = f & RFLAGS.zf != 0
    case 2: c = f & (RFLAGS.cf | RFLAGS.zf) != 0
    default: c = f & RFLAGS.pf != 0
    }
    if negate { c = !c }
    if !stValid(0) || !stValid(i) {
      if x87Underflow() { stSet(0, .indefinite) }
      return
    }
    if c { stSet(0, stGet(i)) }
  }

  /// Unary operation on ST(0) through the host, taking condition codes `cc`.
  func x87Unary(_ op: Int32, cc: UInt16 = fpuCC) {
    if !stValid(0) {
      if x87Underflow() { stSet(0, .indefinite) }
      return
    }
    var a = stGet(0)
    var b = F80.zero
    var z: UInt64 = 0
    let sw = x87Host(op, &a, &b, &z)
    if x87Exception(sw, cc: cc) { stSet(0, a) }
  }

  func x87D9(_ full: Int, _ i: Int) throws(Fault) {
    switch full {
    case 0xC0...0xC7:  // FLD ST(i)
      if !stValid(i) {
        if x87Underflow() { x87PushIndefinite() }
        return
      }
      fpuSW &= ~fpuC1
      _ = x87Push(stGet(i))
    case 0xC8...0xCF: x87Fxch(i)
    case 0xD0: break  // FNOP
    case 0xD8...0xDF:  // FSTP1 (reserved alias of FSTP ST(i))
      if !stValid(0) {
        // As the host (AMD Zen) does for this alias: no stack fault, ST(i)
        // unchanged, just the pop.
        x87Pop()
        return
      }
      stSet(i, stGet(0))
      x87Pop()
    case 0xE0: x87Unary(Int32(XF87_CHS))
    case 0xE1: x87Unary(Int32(XF87_ABS))
    case 0xE4:  // FTST
      if !stValid(0) {
        _ = x87Underflow()
        fpuSW |= fpuC0 | fpuC2 | fpuC3
        return
      }
      x87Compare(Int32(XF87_TST), stGet(0), .zero, pops: 0)
    case 0xE5: x87Fxam()
    case 0xE8...0xEE:  // FLD1 FLDL2T FLDL2E FLDPI FLDLG2 FLDLN2 FLDZ
      var a = F80.zero
      var b = F80.zero
      var z: UInt64 = 0
      let sw = x87Host(Int32(XF87_CONST), &a, &b, &z, imm: full - 0xE8)
      if stValid(7) {
        _ = x87Push(a)
        return
      }
      _ = x87Exception(sw, cc: fpuCC)
      _ = x87Push(a)
    case 0xF0: x87Unary(Int32(XF87_F2XM1))
    case 0xF1, 0xF3, 0xF9:  // FYL2X, FPATAN, FYL2XP1: ST(1) = f(ST(1), ST(0)); pop
      let op = full == 0xF1 ? XF87_YL2X : (full == 0xF3 ? XF87_PATAN : XF87_YL2XP1)
      if !stValid(0) || !stValid(1) {
        if x87Underflow() {
          stSet(1, .indefinite)
          x87Pop()
        }
        return
      }
      var a = stGet(0)
      var b = stGet(1)
      var z: UInt64 = 0
      let sw = x87Host(Int32(op), &a, &b, &z)
      if x87Exception(sw, cc: fpuCC) {
        stSet(1, a)
        x87Pop()
      }
    case 0xF2, 0xFB:  // FPTAN, FSINCOS: ST(0) = f, then push the second result
      if !stValid(0) {
        fpuSW &= ~fpuC2
        if x87Underflow() {
          stSet(0, .indefinite)
          x87PushIndefinite()
        }
        return
      }
      if stValid(7) {
        // Stack overflow: C2 (operand out of range) reads 0 on the host, as for underflow.
        fpuSW &= ~fpuC2
        if x87Exception(fpuIE | fpuSF | fpuC1, cc: fpuC1) {
          stSet(0, .indefinite)
          _ = x87Push(.indefinite)
        }
        return
      }
      var a = stGet(0)
      var b = F80.zero
      var z: UInt64 = 0
      let sw = x87Host(Int32(full == 0xF2 ? XF87_PTAN : XF87_SINCOS), &a, &b, &z)
      if x87Exception(sw, cc: fpuCC) {
        stSet(0, a)
        if sw & fpuC2 == 0 { _ = x87Push(b) }
      }
    case 0xF4:  // FXTRACT
      if !stValid(0) {
        if x87Underflow() {
          stSet(0, .indefinite)
          x87PushIndefinite()
        }
        return
      }
      if stValid(7) {
        if x87Exception(fpuIE | fpuSF | fpuC1, cc: fpuC1) {
          stSet(0, .indefinite)
          _ = x87Push(.indefinite)
        }
        return
      }
      var a = stGet(0)
      var b = F80.zero
      var z: UInt64 = 0
      let sw = x87Host(Int32(XF87_XTRACT), &a, &b, &z)
      if x87Exception(sw, cc: fpuCC) {
        stSet(0, b)
        _ = x87Push(a)
      }
    case 0xF5, 0xF8, 0xFD:  // FPREM1, FPREM, FSCALE: ST(0) = f(ST(0), ST(1))
      let op = full == 0xF5 ? XF87_PREM1 : (full == 0xF8 ? XF87_PREM : XF87_SCALE)
      if !stValid(0) || !stValid(1) {
        if op != XF87_SCALE { fpuSW &= ~fpuC2 }  // as the host: C2 (incomplete) cleared
        if x87Underflow() { stSet(0, .indefinite) }
        return
      }
      var a = stGet(0)
      var b = stGet(1)
      var z: UInt64 = 0
      let sw = x87Host(Int32(op), &a, &b, &z)
      if x87Exception(sw, cc: fpuCC) { stSet(0, a) }
    case 0xF6:  // FDECSTP
      x87Rotate(-1)
      x87SetTop(x87Top &- 1)
      fpuSW &= ~fpuC1
    case 0xF7:  // FINCSTP
      x87Rotate(1)
      x87SetTop(x87Top &+ 1)
      fpuSW &= ~fpuC1
    case 0xFA: x87Unary(Int32(XF87_SQRT))
    case 0xFC: x87Unary(Int32(XF87_RNDINT))
    case 0xFE, 0xFF:  // FSIN, FCOS (a stack underflow clears C2, as on the host)
      if !stValid(0) { fpuSW &= ~fpuC2 }
      x87Unary(Int32(full == 0xFE ? XF87_SIN : XF87_COS))
    default: throw Fault.ud()
    }
  }

  /// FXAM: classify ST(0) into C3 C2 C0, sign in C1.
  func x87Fxam() {
    let v = stGet(0)
    var c: UInt16 = v.negative ? fpuC1 : 0
    let e = v.exponent
    let integer = v.m >> 63 != 0
    let frac = v.m & 0x7FFF_FFFF_FFFF_FFFF
    if !stValid(0) {
      c |= fpuC3 | fpuC0
    } else if e == 0 {
      c |= v.m == 0 ? fpuC3 : (fpuC3 | fpuC2)  // zero; denormal / pseudo-denormal
    } else if e == 0x7FFF {
      if !integer {
        // pseudo-NaN / pseudo-infinity: unsupported (000)
      } else {
        c |= frac == 0 ? (fpuC2 | fpuC0) : fpuC0
      }
    } else {
      c |= integer ? fpuC2 : 0  // normal; unnormal is unsupported
    }
    fpuSW = (fpuSW & ~fpuCC) | c
  }

  // MARK: Memory forms

  func x87Mem(_ b: UInt8, _ r: Int) throws(Fault) {
    // Non-waiting: FNSTENV, FNSTCW, FNSAVE, FNSTSW m16.
    switch (b, r) {
    case (0xD9, 6):
      try x87StoreEnv(addr())
      fpuCW |= 0x3F
      return
    case (0xD9, 7):
      try writeMem(eaSeg, addr(), 2, UInt64(fpuCW))
      return
    case (0xDD, 6):
      try x87Save(addr())
      return
    case (0xDD, 7):
      try writeMem(eaSeg, addr(), 2, UInt64(fpuSW))
      return
    default: break
    }
    switch (b, r) {
    case (0xD9, 4):  // FLDENV
      try x87LoadEnv(addr())
      return
    case (0xD9, 5):  // FLDCW
      try x87PendingCheck()
      fpuCW = UInt16(truncatingIfNeeded: try readMem(eaSeg, addr(), 2)) & 0x1F3F | 0x40
      x87RecomputeES()
      return
    case (0xDD, 4):  // FRSTOR
      try x87Restore(addr())
      return
    default: break
    }
    try x87PendingCheck()
    switch b {
    case 0xD8, 0xDA, 0xDC, 0xDE:
      // Arithmetic with m32fp (D8), m64fp (DC), m16int (DE), m32int (DA), on the host
      // with the memory operand itself (so #D/#I precedence is the hardware's).
      let kind = b == 0xD8 ? 0 : (b == 0xDC ? 1 : (b == 0xDE ? 2 : 3))
      let sizes = [4, 8, 2, 4]
      var raw = try readMem(eaSeg, addr(), sizes[kind])  // memory faults before stack faults
      if !stValid(0) {
        let masked = x87Underflow()
        if r == 2 || r == 3 {
          fpuSW |= fpuC0 | fpuC2 | fpuC3
        } else if masked {
          stSet(0, .indefinite)
        }
        if r == 3 && masked { x87Pop() }
        return
      }
      var a = stGet(0)
      var z = F80.zero
      let sw = x87Host(Int32(XF87_MEMOP) + Int32(kind * 8 + r), &a, &z, &raw)
      if r == 2 || r == 3 {
        if x87Exception(sw, cc: fpuCC) && r == 3 { x87Pop() }
      } else if x87Exception(sw, cc: fpuCC) {
        stSet(0, a)
      }
    case 0xD9:
      switch r {
      case 0:  // FLD m32fp
        if stValid(7) {
          _ = try readMem(eaSeg, addr(), 4)
          _ = x87Push(.zero)
          return
        }
        if let v = try x87LoadMem(0) { _ = x87Push(v) }
      case 2, 3:  // FST/FSTP m32fp
        try x87StoreFP(4, pop: r == 3)
      default: throw Fault.ud()
      }
    case 0xDB:
      switch r {
      case 0:  // FILD m32int
        if stValid(7) {
          _ = try readMem(eaSeg, addr(), 4)
          _ = x87Push(.zero)
          return
        }
        if let v = try x87LoadMem(3) { _ = x87Push(v) }
      case 1: try x87StoreInt(4, op: Int32(XF87_ISTT32), pop: true)
      case 2: try x87StoreInt(4, op: Int32(XF87_IST32), pop: false)
      case 3: try x87StoreInt(4, op: Int32(XF87_IST32), pop: true)
      case 5:  // FLD m80fp
        let a = addr()
        let m = try readMem(eaSeg, a, 8)
        let se = try readMem(eaSeg, a &+ 8, 2)
        fpuSW &= ~fpuC1
        _ = x87Push(F80(m: m, se: UInt16(truncatingIfNeeded: se)))
      case 7:  // FSTP m80fp
        var v = stGet(0)
        if !stValid(0) {
          let a = addr()
          _ = try readMem(eaSeg, a, 8)
          if !x87Underflow() { return }
          v = .indefinite
        }
        let a = addr()
        _ = try readMem(eaSeg, a &+ 8, 2)  // both parts accessible before writing
        try writeMem(eaSeg, a, 8, v.m)
        try writeMem(eaSeg, a &+ 8, 2, UInt64(v.se))
        fpuSW &= ~fpuC1
        x87Pop()
      default: throw Fault.ud()
      }
    case 0xDD:
      switch r {
      case 0:  // FLD m64fp
        if stValid(7) {
          _ = try readMem(eaSeg, addr(), 8)
          _ = x87Push(.zero)
          return
        }
        if let v = try x87LoadMem(1) { _ = x87Push(v) }
      case 1: try x87StoreInt(8, op: Int32(XF87_ISTT64), pop: true)
      case 2, 3: try x87StoreFP(8, pop: r == 3)
      default: throw Fault.ud()
      }
    case 0xDF:
      switch r {
      case 0, 5:  // FILD m16int / m64int
        let kind = r == 0 ? 2 : 4
        if stValid(7) {
          _ = try readMem(eaSeg, addr(), r == 0 ? 2 : 8)
          _ = x87Push(.zero)
          return
        }
        if let v = try x87LoadMem(kind) { _ = x87Push(v) }
      case 1: try x87StoreInt(2, op: Int32(XF87_ISTT16), pop: true)
      case 2: try x87StoreInt(2, op: Int32(XF87_IST16), pop: false)
      case 3: try x87StoreInt(2, op: Int32(XF87_IST16), pop: true)
      case 7: try x87StoreInt(8, op: Int32(XF87_IST64), pop: true)
      default: throw Fault.ud()  // FBLD / FBSTP (packed BCD) are not implemented
      }
    default:
      throw Fault.ud()
    }
  }

  /// FST/FSTP m32fp/m64fp.
  func x87StoreFP(_ size: Int, pop: Bool) throws(Fault) {
    let a = addr()
    if !stValid(0) {
      _ = try readMem(eaSeg, a, size)
      if !x87Underflow() { return }
      try writeMem(eaSeg, a, size, size == 4 ? 0xFFC0_0000 : 0xFFF8_0000_0000_0000)
      if pop { x87Pop() }
      return
    }
    var v = stGet(0)
    var b = F80.zero
    var out: UInt64 = 0
    let sw = x87Host(Int32(size == 4 ? XF87_ST32 : XF87_ST64), &v, &b, &out)
    _ = try readMem(eaSeg, a, size)  // a memory fault leaves the FPU state unchanged
    let unmaskedAny = sw & 0x3F & ~fpuCW != 0
    if !x87Exception(sw, cc: fpuCC) { return }
    if unmaskedAny && sw & 0x18 & ~fpuCW != 0 { return }  // unmasked O/U: no store
    try writeMem(eaSeg, a, size, out & sizeMask(size))
    if pop { x87Pop() }
  }

  /// FIST/FISTP/FISTTP.
  func x87StoreInt(_ size: Int, op: Int32, pop: Bool) throws(Fault) {
    let a = addr()
    if !stValid(0) {
      _ = try readMem(eaSeg, a, size)
      if !x87Underflow() { return }
      let ind: UInt64 = size == 2 ? 0x8000 : (size == 4 ? 0x8000_0000 : 0x8000_0000_0000_0000)
      try writeMem(eaSeg, a, size, ind)
      if pop { x87Pop() }
      return
    }
    var v = stGet(0)
    var b = F80.zero
    var out: UInt64 = 0
    let sw = x87Host(op, &v, &b, &out)
    _ = try readMem(eaSeg, a, size)
    if !x87Exception(sw, cc: fpuCC) { return }
    try writeMem(eaSeg, a, size, out & sizeMask(size))
    if pop { x87Pop() }
  }

  // MARK: Environment

  /// The full 16-bit tag word (00 valid, 01 zero, 10 special, 11 empty) by physical register.
  func x87FullTag() -> UInt16 {
    var t: UInt16 = 0
    let top = x87Top
    for p in 0..<8 {
      var tag: UInt16 = 3
      if (fpuTW >> UInt8(p)) & 1 != 0 {
        let v = stGet((p - top) & 7)
        let e = v.exponent
        if e == 0 {
          tag = v.m == 0 ? 1 : 2
        } else if e == 0x7FFF || v.m >> 63 == 0 {
          tag = 2
        } else {
          tag = 0
        }
      }
      t |= tag << UInt16(p * 2)
    }
    return t
  }

  func x87StoreEnv(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    let am = sizeMask(adSize)
    if opSize == 2 {
      let vals: [UInt64] = [UInt64(fpuCW), UInt64(fpuSW), UInt64(x87FullTag()), 0, 0, 0, 0]
      _ = try readMem(s, (a &+ 13) & am, 1)
      for (k, v) in vals.enumerated() { try writeMem(s, (a &+ UInt64(k * 2)) & am, 2, v) }
    } else {
      let vals: [UInt64] = [
        0xFFFF_0000 | UInt64(fpuCW), 0xFFFF_0000 | UInt64(fpuSW),
        0xFFFF_0000 | UInt64(x87FullTag()),
        0, 0, 0, 0xFFFF_0000,
      ]
      _ = try readMem(s, (a &+ 27) & am, 1)
      for (k, v) in vals.enumerated() { try writeMem(s, (a &+ UInt64(k * 4)) & am, 4, v) }
    }
  }

  /// Size of the FNSTENV image.
  var x87EnvSize: UInt64 { opSize == 2 ? 14 : 28 }

  func x87LoadEnv(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    let am = sizeMask(adSize)
    let step: UInt64 = opSize == 2 ? 2 : 4
    let cw = try readMem(s, a, 2)
    let sw = try readMem(s, (a &+ step) & am, 2)
    let tw = try readMem(s, (a &+ 2 &* step) & am, 2)
    _ = try readMem(s, (a &+ x87EnvSize &- 1) & am, 1)
    fpuCW = UInt16(truncatingIfNeeded: cw) & 0x1F3F | 0x40
    fpuSW = UInt16(truncatingIfNeeded: sw)
    var abridged: UInt8 = 0
    for p in 0..<8 where (tw >> UInt64(p * 2)) & 3 != 3 { abridged |= 1 << UInt8(p) }
    fpuTW = abridged
    x87RecomputeES()
  }

  /// FNSAVE: environment, then ST(0)..ST(7) as 10-byte values; then FNINIT.
  func x87Save(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    let am = sizeMask(adSize)
    let base = x87EnvSize
    _ = try readMem(s, (a &+ base &+ 79) & am, 1)
    try x87StoreEnv(a)
    for i in 0..<8 {
      let v = stGet(i)
      let o = a &+ base &+ UInt64(i * 10)
      try writeMem(s, o & am, 8, v.m)
      try writeMem(s, (o &+ 8) & am, 2, UInt64(v.se))
    }
    x87NormalizeTop()
    fpuCW = 0x37F
    fpuSW = 0
    fpuTW = 0
  }

  func x87Restore(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    let am = sizeMask(adSize)
    let base = x87EnvSize
    var regs = [F80]()
    for i in 0..<8 {
      let o = a &+ base &+ UInt64(i * 10)
      let m = try readMem(s, o & am, 8)
      let se = try readMem(s, (o &+ 8) & am, 2)
      regs.append(F80(m: m, se: UInt16(truncatingIfNeeded: se)))
    }
    try x87LoadEnv(a)
    for i in 0..<8 { stPut(i, regs[i]) }
  }
}
