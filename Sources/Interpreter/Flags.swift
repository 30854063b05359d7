import X86

/// Which operation last set the arithmetic flags (lazy flags).
enum FlagOp: UInt8 {
  /// Status flags are materialised in `rfl`.
  case none
  case add, adc, sub, sbb, logic, inc, dec
}

@inline(__always) func sizeMask(_ size: Int) -> UInt64 {
  size == 8 ? ~0 : (1 &<< UInt64(size &* 8)) &- 1
}

@inline(__always) func signBit(_ size: Int) -> UInt64 { 1 &<< UInt64(size &* 8 &- 1) }

/// Sign-extends the low `size` bytes of `v` to 64 bits.
@inline(__always) func sext(_ v: UInt64, _ size: Int) -> UInt64 {
  switch size {
  case 1: return UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: v)))
  case 2: return UInt64(bitPattern: Int64(Int16(truncatingIfNeeded: v)))
  case 4: return UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: v)))
  default: return v
  }
}

@inline(__always) func parityFlag(_ v: UInt64) -> UInt64 {
  var x = v & 0xFF
  x ^= x >> 4
  x ^= x >> 2
  x ^= x >> 1
  return (~x & 1) << 2
}

extension InterpreterCPU {
  /// Sets lazy flags for a result; operands are pre-masked to `size`.
  @inline(__always) func setFlags(
    _ op: FlagOp, _ size: Int, _ res: UInt64, _ a: UInt64, _ b: UInt64
  ) {
    fOp = op
    fSize = size
    fRes = res
    fA = a
    fB = b
  }

  @inline(__always) func setLogicFlags(_ size: Int, _ res: UInt64) {
    fOp = .logic
    fSize = size
    fRes = res
  }

  /// The six status flags computed from the lazy state.
  func statusFlags() -> UInt64 {
    let op = fOp
    if op == .none { return rfl & RFLAGS.status }
    let size = fSize
    let res = fRes
    let sb = signBit(size)
    var f: UInt64 = parityFlag(res)
    if res == 0 { f |= RFLAGS.zf }
    if res & sb != 0 { f |= RFLAGS.sf }
    let a = fA
    let b = fB
    switch op {
    case .add, .adc:
      let cf = op == .add || fCin == 0 ? res < a : res <= a
      if cf { f |= RFLAGS.cf }
      if (a ^ res) & (b ^ res) & sb != 0 { f |= RFLAGS.of }
      f |= (a ^ b ^ res) & RFLAGS.af
    case .sub, .sbb:
      let cf = op == .sub || fCin == 0 ? a < b : a <= b
      if cf { f |= RFLAGS.cf }
      if (a ^ b) & (a ^ res) & sb != 0 { f |= RFLAGS.of }
      f |= (a ^ b ^ res) & RFLAGS.af
    case .logic:
      break
    case .inc:
      f |= fCin & RFLAGS.cf
      if res == sb { f |= RFLAGS.of }
      f |= (a ^ 1 ^ res) & RFLAGS.af
    case .dec:
      f |= fCin & RFLAGS.cf
      if a == sb { f |= RFLAGS.of }
      f |= (a ^ 1 ^ res) & RFLAGS.af
    case .none:
      break
    }
    return f
  }

  /// Full RFLAGS.
  var flags: UInt64 {
    get { (rfl & ~RFLAGS.status) | statusFlags() | RFLAGS.fixed }
    set {
      rfl = (newValue & 0x003F_7FD5) | RFLAGS.fixed
      fOp = .none
    }
  }

  /// Freezes the lazy status flags into `rfl`.
  @inline(__always) func materialize() {
    if fOp != .none {
      rfl = (rfl & ~RFLAGS.status) | statusFlags()
      fOp = .none
    }
  }

  @inline(__always) var cf: Bool {
    switch fOp {
    case .none: return rfl & 1 != 0
    case .logic: return false
    case .sub: return fA < fB
    case .add: return fRes < fA
    case .inc, .dec: return fCin & 1 != 0
    default: return statusFlags() & 1 != 0
    }
  }

  /// Sets the status flags explicitly (eager ops such as shifts).
  @inline(__always) func setStatus(_ f: UInt64) {
    rfl = (rfl & ~RFLAGS.status) | (f & RFLAGS.status)
    fOp = .none
  }

  /// Replaces only the flags in `mask` (others keep their current values).
  @inline(__always) func setStatus(_ f: UInt64, mask: UInt64) {
    let cur = statusFlags()
    rfl = (rfl & ~RFLAGS.status) | (cur & ~mask) | (f & mask)
    fOp = .none
  }

  /// Condition code 0..15 as in Jcc/SETcc/CMOVcc.
  @inline(__always) func cond(_ cc: Int) -> Bool {
    let op = fOp
    if op == .sub {
      let a = fA
      let b = fB
      let r: Bool
      switch cc >> 1 {
      case 0: r = (a ^ b) & (a ^ fRes) & signBit(fSize) != 0
      case 1: r = a < b
      case 2: r = a == b
      case 3: r = a <= b
      case 4: r = fRes & signBit(fSize) != 0
      case 5: r = parityFlag(fRes) != 0
      case 6: r = Int64(bitPattern: sext(a, fSize)) < Int64(bitPattern: sext(b, fSize))
      default: r = Int64(bitPattern: sext(a, fSize)) <= Int64(bitPattern: sext(b, fSize))
      }
      return r != (cc & 1 != 0)
    }
    if op == .logic {
      let res = fRes
      let r: Bool
      switch cc >> 1 {
      case 0, 1: r = false
      case 2, 3: r = res == 0
      case 4, 6: r = res & signBit(fSize) != 0
      case 5: r = parityFlag(res) != 0
      default: r = res == 0 || res & signBit(fSize) != 0
      }
      return r != (cc & 1 != 0)
    }
    return condSlow(cc)
  }

  func condSlow(_ cc: Int) -> Bool {
    let f = statusFlags()
    let r: Bool
    switch cc >> 1 {
    case 0: r = f & RFLAGS.of != 0
    case 1: r = f & RFLAGS.cf != 0
    case 2: r = f & RFLAGS.zf != 0
    case 3: r = f & (RFLAGS.cf | RFLAGS.zf) != 0
    case 4: r = f & RFLAGS.sf != 0
    case 5: r = f & RFLAGS.pf != 0
    case 6: r = (f & RFLAGS.sf != 0) != (f & RFLAGS.of != 0)
    default: r = f & RFLAGS.zf != 0 || ((f & RFLAGS.sf != 0) != (f & RFLAGS.of != 0))
    }
    return r != (cc & 1 != 0)
  }

  // MARK: ALU

  /// The eight classic ALU ops (ADD OR ADC SBB AND SUB XOR CMP); returns the masked result.
  /// Transparent (always inlined, also into the decoded-form handlers), with the rarer
  /// ADC/SBB out of line to keep the hot loop small.
  @_transparent func alu(_ op: Int, _ a: UInt64, _ b: UInt64, _ size: Int) -> UInt64 {
    let m = sizeMask(size)
    let r: UInt64
    switch op {
    case 0:
      r = (a &+ b) & m
      setFlags(.add, size, r, a, b)
    case 5, 7:
      r = (a &- b) & m
      setFlags(.sub, size, r, a, b)
    case 1:
      r = (a | b) & m
      setLogicFlags(size, r)
    case 4:
      r = a & b & m
      setLogicFlags(size, r)
    case 6:
      r = (a ^ b) & m
      setLogicFlags(size, r)
    default:
      return aluCarry(op, a, b, size)
    }
    return r
  }

  /// ADC (op 2) and SBB (op 3).
  @inline(never) func aluCarry(_ op: Int, _ a: UInt64, _ b: UInt64, _ size: Int) -> UInt64 {
    let c: UInt64 = cf ? 1 : 0
    fCin = c
    if op == 2 {
      let r = (a &+ b &+ c) & sizeMask(size)
      setFlags(.adc, size, r, a, b)
      return r
    }
    let r = (a &- b &- c) & sizeMask(size)
    setFlags(.sbb, size, r, a, b)
    return r
  }

  @inline(__always) func incdec(_ a: UInt64, _ size: Int, dec: Bool) -> UInt64 {
    fCin = cf ? 1 : 0
    let r = (dec ? a &- 1 : a &+ 1) & sizeMask(size)
    setFlags(dec ? .dec : .inc, size, r, a, 1)
    return r
  }

  /// Group-2 shifts and rotates (ROL ROR RCL RCR SHL SHR SAL SAR) with exact flags.
  @_transparent func shift(_ op: Int, _ a: UInt64, _ rawCount: UInt64, _ size: Int) -> UInt64 {
    let count = rawCount & (size == 8 ? 0x3F : 0x1F)
    if count == 0 { return a }
    if op < 4 { return rotate(op, a, count, size) }
    let bits = UInt64(size &* 8)
    let m = sizeMask(size)
    let sb = signBit(size)
    let r: UInt64
    var f: UInt64  // CF, then the other status flags
    switch op {
    case 4, 6:  // SHL/SAL
      r = count >= bits ? 0 : (a &<< count) & m
      f = count > bits ? 0 : (a &>> (bits &- count)) & 1
      if ((r & sb != 0) ? 1 : 0) ^ f != 0 { f |= RFLAGS.of }
    case 5:  // SHR
      r = count >= bits ? 0 : a &>> count
      f = count > bits ? 0 : (a &>> (count &- 1)) & 1
      if a & sb != 0 { f |= RFLAGS.of }
    default:  // SAR
      let sa = Int64(bitPattern: sext(a, size))
      r = UInt64(bitPattern: sa &>> Int64(count >= bits ? bits &- 1 : count)) & m
      f = UInt64(bitPattern: sa &>> Int64(min(count &- 1, 63))) & 1
    }
    // Shifts define every status flag themselves (AF: 0).
    f |= parityFlag(r) | (r == 0 ? RFLAGS.zf : 0) | (r & sb != 0 ? RFLAGS.sf : 0)
    setStatus(f)
    return r
  }

  /// ROL ROR RCL RCR by a masked, non-zero count; SF/ZF/AF/PF are kept.
  func rotate(_ op: Int, _ a: UInt64, _ count: UInt64, _ size: Int) -> UInt64 {
    let bits = UInt64(size * 8)
    let m = sizeMask(size)
    let sb = signBit(size)
    var f = statusFlags()
    var r: UInt64
    switch op {
    case 0:  // ROL
      let c = count % bits
      r = c == 0 ? a : ((a << c) | (a >> (bits - c))) & m
      let cfv = r & 1
      f = (f & ~(RFLAGS.cf | RFLAGS.of)) | cfv
      if ((r & sb != 0) ? 1 : 0) ^ cfv != 0 { f |= RFLAGS.of }
      setStatus(f)
      return r
    case 1:  // ROR
      let c = count % bits
      r = c == 0 ? a : ((a >> c) | (a << (bits - c))) & m
      f &= ~(RFLAGS.cf | RFLAGS.of)
      if r & sb != 0 { f |= RFLAGS.cf }
      if ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1 != 0 { f |= RFLAGS.of }
      setStatus(f)
      return r
    case 2:  // RCL
      let c = size == 1 ? count % 9 : size == 2 ? count % 17 : count
      if c == 0 { return a }
      var v = a
      var carry = f & 1
      for _ in 0..<c {
        let out = (v & sb) != 0 ? UInt64(1) : 0
        v = ((v << 1) | carry) & m
        carry = out
      }
      r = v
      f = (f & ~(RFLAGS.cf | RFLAGS.of)) | carry
      if ((r & sb != 0) ? 1 : 0) ^ carry != 0 { f |= RFLAGS.of }
      setStatus(f)
      return r
    default:  // RCR
      let c = size == 1 ? count % 9 : size == 2 ? count % 17 : count
      if c == 0 { return a }
      var v = a
      var carry = f & 1
      f &= ~(RFLAGS.cf | RFLAGS.of)
      if ((a & sb != 0) ? 1 : 0) ^ carry != 0 { f |= RFLAGS.of }
      for _ in 0..<c {
        let out = v & 1
        v = (v >> 1) | (carry != 0 ? sb : 0)
        carry = out
      }
      r = v
      f |= carry
      setStatus(f)
      return r
    }
  }

  /// SHLD (left) / SHRD (right) with count already read.
  func shiftDouble(_ dst: UInt64, _ src: UInt64, _ rawCount: UInt64, _ size: Int, left: Bool)
    -> UInt64
  {
    let bits = UInt64(size * 8)
    let count = rawCount & (size == 8 ? 0x3F : 0x1F)
    if count == 0 { return dst }
    let m = sizeMask(size)
    let sb = signBit(size)
    var r: UInt64
    var cfv: UInt64
    if size == 2 {
      // 16-bit: operate on the 32-bit (or wider) concatenation; counts > 16 are undefined.
      if left {
        let cat = (dst << 32) | (src << 16) | dst
        r = ((cat << count) >> 32) & m
        cfv = (cat >> (48 - count)) & 1
      } else {
        let wide = (dst << 32) | (src << 16) | dst
        r = (wide >> count) & m
        cfv = (wide >> (count - 1)) & 1
      }
    } else if left {
      r = ((dst << count) | (src >> (bits - count))) & m
      cfv = (dst >> (bits - count)) & 1
    } else {
      r = ((dst >> count) | (src << (bits - count))) & m
      cfv = (dst >> (count - 1)) & 1
    }
    var f = cfv | parityFlag(r) | (r == 0 ? RFLAGS.zf : 0) | (r & sb != 0 ? RFLAGS.sf : 0)
    if (r ^ dst) & sb != 0 { f |= RFLAGS.of }
    setStatus(f)
    return r
  }
}
