import Engine
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// Pre-decoded instruction cache.
//
// The hottest instruction forms (MOV/ALU/TEST/LEA r/m, Jcc/JMP/CALL/RET, PUSH/POP,
// shifts, INC/DEC, MOVZX/MOVSX, IMUL, CMOVcc/SETcc) are decoded once and cached by the
// host address of their first byte (the guest-physical location). Every hit re-checks
// the instruction's bytes against the cached copy (two 8-byte compares), so
// self-modifying and cross-modifying code (stores, DMA, alias mappings) needs no
// invalidation: a changed instruction simply misses. Anything else (other opcodes,
// LOCK/REP/0x67 prefixes, 16-bit code, instructions near a page end) goes through the
// full decoder in `step()`; a negative entry remembers that cheaply.

/// One cached instruction (see the file comment).
struct DecodedInsn {
  /// Host address of the first byte | mode << 56; 0 = empty slot.
  var host: UInt = 0
  /// The instruction bytes (first 16) and the masks selecting its `len` bytes.
  var b0: UInt64 = 0
  var b1: UInt64 = 0
  var m0: UInt64 = 0
  var m1: UInt64 = 0
  /// Immediate operand (already masked/sign-extended as the handler needs it).
  var imm: UInt64 = 0
  /// Memory operand displacement, or branch displacement (see `disp`).
  var disp32: Int32 = 0
  /// Handler (DC.*); DC.none: use the full decoder.
  var kind: UInt8 = 0
  var len: UInt8 = 0
  /// Operand size in bytes.
  var size: UInt8 = 0
  /// ALU/shift operation, condition code, or source size.
  var op: UInt8 = 0
  /// ModRM.reg (with REX.R) or the register of a one-byte register form.
  var reg: UInt8 = 0
  /// Register operand (isReg) or base register (0xFF: none).
  var rm: UInt8 = 0xFF
  var index: UInt8 = 0xFF
  var scale: UInt8 = 0
  var seg: UInt8 = 0
  var rex: UInt8 = 0
  var isReg = false
  var ripRel = false
  // 64 bytes: one cache line. The address size follows from the mode in the key
  // (cached code is 32- or 64-bit, without 0x67), so it is not stored.

  /// Displacements are at most 32 bits (sign-extended), or an unsigned rel16.
  var disp: UInt64 {
    @inline(__always) get { UInt64(bitPattern: Int64(disp32)) }
    set { disp32 = Int32(truncatingIfNeeded: newValue) }
  }
}

/// Handler indices.
enum DC {
  static let none: UInt8 = 0
  static let aluEG: UInt8 = 1
  static let aluGE: UInt8 = 2
  static let aluAI: UInt8 = 3
  static let aluEI: UInt8 = 4
  static let test: UInt8 = 5
  static let movEG: UInt8 = 6
  static let movGE: UInt8 = 7
  static let lea: UInt8 = 8
  static let movsxd: UInt8 = 9
  static let jcc: UInt8 = 10
  static let jmp: UInt8 = 11
  static let call: UInt8 = 12
  static let ret: UInt8 = 13
  static let pushR: UInt8 = 14
  static let popR: UInt8 = 15
  static let movRI: UInt8 = 16
  static let shift: UInt8 = 17
  static let incdec: UInt8 = 18
  static let callInd: UInt8 = 19
  static let jmpInd: UInt8 = 20
  static let pushE: UInt8 = 21
  static let movzx: UInt8 = 22
  static let movsx: UInt8 = 23
  static let imul: UInt8 = 24
  static let cmov: UInt8 = 25
  static let setcc: UInt8 = 26
  static let testI: UInt8 = 27
  static let movEI: UInt8 = 28
  static let leave: UInt8 = 29
  static let nop: UInt8 = 30
}

/// Direct-mapped table of decoded instructions (bounded: `size` entries, 4 MiB).
/// Anonymous zero pages: nothing is committed until used, so creating a CPU stays
/// cheap; an all-zero entry is empty (no lookup key is 0).
struct DecodeCache {
  static let bits = 16
  static let size = 1 << bits
  static let mask = size - 1
  static let bytes = size * MemoryLayout<DecodedInsn>.stride
  let entries: UnsafeMutablePointer<DecodedInsn>

  /// `map` reserves `bytes` of zeroed memory (nil on failure); tests inject a failing one.
  init(map: (Int) -> UnsafeMutableRawPointer? = DecodeCache.mapAnonymous) throws(EngineError) {
    assert(MemoryLayout<DecodedInsn>.stride == 64)
    guard let m = map(DecodeCache.bytes) else {
      // A host out of address space is the user's problem to hear about, not a crash.
      throw EngineError.unavailable(
        "cannot map the interpreter's \(DecodeCache.bytes >> 20) MiB decode cache: "
          + String(cString: strerror(errno)))
    }
    entries = m.bindMemory(to: DecodedInsn.self, capacity: DecodeCache.size)
  }

  static func mapAnonymous(_ bytes: Int) -> UnsafeMutableRawPointer? {
    let m = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    return m == UnsafeMutableRawPointer(bitPattern: -1) ? nil : m
  }

  func deallocate() {
    munmap(entries, DecodeCache.bytes)
  }

  @inline(__always) static func slot(_ host: UInt) -> Int {
    Int(truncatingIfNeeded: (host ^ (host >> 13)) & UInt(mask))
  }
}

extension InterpreterCPU {
  /// `step()` through the decode cache.
  @inline(__always) func stepCached() throws(Fault) {
    let lin = linear(CS, rip)
    let tslot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    // Cached forms must lie in one page, with 16 readable bytes for the compare.
    guard tlb.xtag[tslot] == (lin & ~0xFFF) | userKey, lin & 0xFFF <= 4096 - 16 else {
      try stepFull()
      return
    }
    let hostAddr = UInt(bitPattern: tlb.xadd[tslot] &+ Int(bitPattern: UInt(lin)))
    let p = UnsafeRawPointer(bitPattern: hostAddr).unsafelyUnwrapped
    let ep = dcache.entries + DecodeCache.slot(hostAddr)
    let mode = dcMode
    let key = hostAddr | UInt(mode) &<< 56
    let w0 = p.loadUnaligned(as: UInt64.self)
    let w1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
    if ep.pointee.host != key || (w0 ^ ep.pointee.b0) & ep.pointee.m0 != 0
      || (w1 ^ ep.pointee.b1) & ep.pointee.m1 != 0
    {
      stats.decodeMisses &+= 1
      dcDecode(p, ep, mode, key)
    }
    if ep.pointee.kind == DC.none {
      try stepFull()
      return
    }
    stats.decodeHits &+= 1
    try dcExecute(UnsafePointer(ep))
  }

  /// The full decoder, kept out of line so the cached path stays small.
  @inline(never) func stepFull() throws(Fault) {
    stats.decodeUncached &+= 1
    try step()
  }

  // MARK: Decoding

  /// Decodes the instruction at `p` into `ep` (kind DC.none when not a cached form).
  @inline(never)
  func dcDecode(
    _ p: UnsafeRawPointer, _ ep: UnsafeMutablePointer<DecodedInsn>, _ mode: UInt8, _ host: UInt
  ) {
    var e = DecodedInsn()
    e.host = host
    e.kind = DC.none
    // A negative entry validates on the first 8 bytes.
    e.b0 = p.loadUnaligned(as: UInt64.self)
    e.m0 = ~0
    defer { ep.pointee = e }
    // 16-bit code, and code under a CS limit (every fetch checked), is not cached.
    if codeSize == 2 || mode & 0x20 != 0 { return }
    @inline(__always) func u8(_ i: Int) -> UInt64 {
      UInt64(p.load(fromByteOffset: i, as: UInt8.self))
    }
    @inline(__always) func u32(_ i: Int) -> UInt64 {
      UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
    }
    var i = 0
    var os = defOpSize
    var rex: UInt8 = 0
    var segOvr = -1
    var has66 = false
    var b = p.load(as: UInt8.self)
    while true {
      switch b {
      case 0x66:
        has66 = true
        os = codeSize == 2 ? 4 : 2
        rex = 0
      case 0x26, 0x2E, 0x36, 0x3E:
        segOvr = Int((b >> 3) & 3)
        rex = 0
      case 0x64:
        segOvr = FS
        rex = 0
      case 0x65:
        segOvr = GS
        rex = 0
      case 0x40...0x4F where mode64:
        rex = b
      default:
        break
      }
      if b != 0x66 && b != 0x26 && b != 0x2E && b != 0x36 && b != 0x3E && b != 0x64 && b != 0x65
        && !(mode64 && b & 0xF0 == 0x40)
      {
        break
      }
      i += 1
      if i >= 5 { return }
      b = p.load(fromByteOffset: i, as: UInt8.self)
    }
    if rex & 8 != 0 { os = 8 }
    i += 1  // opcode
    e.rex = rex
    let stackOS = mode64 ? (has66 ? 2 : 8) : os

    // ModRM (+SIB, displacement) at i.
    func modrm() {
      let m = Int(u8(i))
      i += 1
      e.reg = UInt8(((m >> 3) & 7) | (Int(rex & 4) << 1))
      if m >= 0xC0 {
        e.isReg = true
        e.rm = UInt8((m & 7) | (Int(rex & 1) << 3))
        return
      }
      let mod = m >> 6
      let rmf = m & 7
      var s = DS
      var disp: UInt64 = 0
      e.rm = 0xFF
      e.index = 0xFF
      if rmf == 4 {
        let sib = Int(u8(i))
        i += 1
        let idx = ((sib >> 3) & 7) | (Int(rex & 2) << 2)
        let bse = sib & 7
        if idx != 4 {
          e.index = UInt8(idx)
          e.scale = UInt8(sib >> 6)
        }
        if bse == 5 && mod == 0 {
          disp = sext(u32(i), 4)
          i += 4
        } else {
          let bi = bse | (Int(rex & 1) << 3)
          e.rm = UInt8(bi)
          if bi == 4 || bi == 5 { s = SS }
        }
      } else if rmf == 5 && mod == 0 {
        disp = sext(u32(i), 4)
        i += 4
        if mode64 { e.ripRel = true }
      } else {
        let bi = rmf | (Int(rex & 1) << 3)
        e.rm = UInt8(bi)
        if bi == 5 { s = SS }
      }
      if mod == 1 {
        disp &+= sext(u8(i), 1)
        i += 1
      } else if mod == 2 {
        disp &+= sext(u32(i), 4)
        i += 4
      }
      e.disp = disp
      e.seg = UInt8(e.ripRel ? (segOvr >= 0 ? segOvr : DS) : (segOvr >= 0 ? segOvr : s))
    }
    /// Immediate of `size` bytes as `imm(size)` returns it.
    func immediate(_ size: Int) -> UInt64 {
      switch size {
      case 1:
        i += 1
        return u8(i - 1)
      case 2:
        i += 2
        return u8(i - 2) | u8(i - 1) << 8
      case 4:
        i += 4
        return u32(i - 4)
      default:
        i += 4
        return sext(u32(i - 4), 4)
      }
    }

    var kind = DC.none
    var size = os
    switch b {
    case 0x00...0x3F where b & 7 < 6 && b & 0xE7 != 0x26 && b != 0x0F:
      let form = b & 7
      e.op = b >> 3
      size = form & 1 == 0 ? 1 : os
      switch form {
      case 0, 1:
        modrm()
        kind = DC.aluEG
      case 2, 3:
        modrm()
        kind = DC.aluGE
      default:
        e.imm = immediate(size) & sizeMask(size)
        kind = DC.aluAI
      }
    case 0x50...0x57:
      e.reg = (b & 7) | ((rex & 1) << 3)
      size = stackOS
      kind = DC.pushR
    case 0x58...0x5F:
      e.reg = (b & 7) | ((rex & 1) << 3)
      size = stackOS
      kind = DC.popR
    case 0x63 where mode64:
      modrm()
      kind = DC.movsxd
    case 0x70...0x7F:
      e.op = b & 0xF
      e.disp = sext(immediate(1), 1)
      kind = DC.jcc
    case 0x80, 0x81, 0x83:
      modrm()
      size = b == 0x80 ? 1 : os
      let v = b == 0x81 ? sext(immediate(size), size == 8 ? 4 : size) : sext(immediate(1), 1)
      e.imm = v & sizeMask(size)
      e.op = e.reg & 7
      kind = DC.aluEI
    case 0x84, 0x85:
      modrm()
      size = b == 0x84 ? 1 : os
      kind = DC.test
    case 0x88, 0x89:
      modrm()
      size = b == 0x88 ? 1 : os
      kind = DC.movEG
    case 0x8A, 0x8B:
      modrm()
      size = b == 0x8A ? 1 : os
      kind = DC.movGE
    case 0x8D:
      modrm()
      if e.isReg { return }
      kind = DC.lea
    case 0x90:
      if rex & 1 != 0 { return }
      kind = DC.nop
    case 0xB0...0xB7:
      e.reg = (b & 7) | ((rex & 1) << 3)
      size = 1
      e.imm = immediate(1)
      kind = DC.movRI
    case 0xB8...0xBF:
      e.reg = (b & 7) | ((rex & 1) << 3)
      if os == 8 {
        e.imm = u32(i) | u32(i + 4) << 32
        i += 8
      } else {
        e.imm = immediate(os)
      }
      kind = DC.movRI
    case 0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3:
      modrm()
      size = b & 1 == 0 ? 1 : os
      e.op = e.reg & 7
      if b <= 0xC1 {
        e.imm = immediate(1)
      } else if b <= 0xD1 {
        e.imm = 1
      } else {
        e.imm = 0x100  // count from CL
      }
      kind = DC.shift
    case 0xC2, 0xC3:
      e.imm = b == 0xC2 ? immediate(2) : 0
      size = stackOS
      kind = DC.ret
    case 0xC6, 0xC7:
      modrm()
      if e.reg & 7 != 0 { return }
      size = b == 0xC6 ? 1 : os
      e.imm = immediate(size)
      kind = DC.movEI
    case 0xC9:
      size = stackOS
      kind = DC.leave
    case 0xE8, 0xE9:
      e.disp = mode64 || os == 4 ? sext(immediate(4), 4) : immediate(2)
      size = stackOS
      kind = b == 0xE8 ? DC.call : DC.jmp
    case 0xEB:
      e.disp = sext(immediate(1), 1)
      kind = DC.jmp
    case 0xF6, 0xF7:
      modrm()
      if e.reg & 7 > 1 { return }
      size = b == 0xF6 ? 1 : os
      e.imm = immediate(size) & sizeMask(size)
      kind = DC.testI
    case 0xFE:
      modrm()
      if e.reg & 7 > 1 { return }
      size = 1
      e.op = e.reg & 7
      kind = DC.incdec
    case 0xFF:
      modrm()
      switch e.reg & 7 {
      case 0, 1:
        e.op = e.reg & 7
        kind = DC.incdec
      case 2:
        size = mode64 ? 8 : os
        kind = DC.callInd
      case 4:
        size = mode64 ? 8 : os
        kind = DC.jmpInd
      case 6:
        size = stackOS
        kind = DC.pushE
      default:
        return
      }
    case 0x0F:
      let b2 = p.load(fromByteOffset: i, as: UInt8.self)
      i += 1
      switch b2 {
      case 0x80...0x8F:
        e.op = b2 & 0xF
        e.disp = mode64 || os == 4 ? sext(immediate(4), 4) : immediate(2)
        kind = DC.jcc
      case 0x40...0x4F:
        modrm()
        e.op = b2 & 0xF
        kind = DC.cmov
      case 0x90...0x9F:
        modrm()
        e.op = b2 & 0xF
        size = 1
        kind = DC.setcc
      case 0x1F:
        modrm()
        if e.reg & 7 != 0 { return }
        kind = DC.nop  // 0F 1F /0: the multi-byte NOP compilers pad loop heads with
      case 0xAF:
        modrm()
        kind = DC.imul
      case 0xB6, 0xB7:
        modrm()
        e.op = b2 == 0xB6 ? 1 : 2
        kind = DC.movzx
      case 0xBE, 0xBF:
        modrm()
        e.op = b2 == 0xBE ? 1 : 2
        kind = DC.movsx
      default:
        return
      }
    default:
      return
    }
    if i > 15 { return }
    e.size = UInt8(size)
    e.len = UInt8(i)
    e.m0 = i >= 8 ? ~0 : (1 &<< UInt64(i * 8)) &- 1
    e.m1 = i <= 8 ? 0 : (1 &<< UInt64((i - 8) * 8)) &- 1
    e.b1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
    e.kind = kind
  }

  // MARK: Execution

  /// `getReg` with the common 64/32-bit sizes first.
  @inline(__always) func dcGet(_ i: Int, _ s: Int) -> UInt64 {
    if s == 8 { return r[i] }
    if s == 4 { return r[i] & 0xFFFF_FFFF }
    return getReg(i, s)
  }

  /// `setReg` with the common 64/32-bit sizes first.
  @inline(__always) func dcSet(_ i: Int, _ s: Int, _ v: UInt64) {
    if s == 8 {
      r[i] = v
    } else if s == 4 {
      r[i] = v & 0xFFFF_FFFF
    } else {
      setReg(i, s, v)
    }
  }

  /// `alu` with ADD/SUB/CMP/AND/OR/XOR inline (same lazy flags); ADC/SBB call `alu`.
  @_transparent func dcALU(_ op: Int, _ a: UInt64, _ b: UInt64, _ size: Int) -> UInt64 {
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
      return alu(op, a, b, size)
    }
    return r
  }

  /// `imul2` + `mulFlags` inline (two/three-operand IMUL, truncated result).
  @_transparent func dcIMul(_ a: UInt64, _ b: UInt64, _ s: Int) -> UInt64 {
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
    var f = parityFlag(lo)
    if lo & signBit(s) != 0 { f |= RFLAGS.sf }
    if lo == 0 { f |= RFLAGS.zf }
    if overflow { f |= RFLAGS.cf | RFLAGS.of }
    setStatus(f)
    return lo
  }

  /// SHL/SHR/SAR of a 32/64-bit operand by a non-zero count (flags as `shift`); nil otherwise.
  @inline(__always) func dcShift(_ op: Int, _ a: UInt64, _ rawCount: UInt64, _ size: Int) -> UInt64
  {
    let c = rawCount & (size == 8 ? 0x3F : 0x1F)
    if size < 4 || c == 0 || op < 4 { return shift(op, a, rawCount, size) }
    let bits = UInt64(size &* 8)
    let m = sizeMask(size)
    let sb = signBit(size)
    let res: UInt64
    var f: UInt64
    switch op {
    case 4, 6:
      res = (a &<< c) & m
      f = (a &>> (bits &- c)) & 1
      if ((res & sb != 0) ? 1 : 0) ^ f != 0 { f |= RFLAGS.of }
    case 5:
      res = a &>> c
      f = (a &>> (c &- 1)) & 1
      if a & sb != 0 { f |= RFLAGS.of }
    default:
      let sa = Int64(bitPattern: sext(a, size))
      res = UInt64(bitPattern: sa &>> Int64(c)) & m
      f = UInt64(bitPattern: sa &>> Int64(c &- 1)) & 1
    }
    f |= parityFlag(res) | (res == 0 ? RFLAGS.zf : 0) | (res & sb != 0 ? RFLAGS.sf : 0)
    setStatus(f)
    return res
  }

  @inline(__always) func dcAddr(_ e: UnsafePointer<DecodedInsn>) -> UInt64 {
    var a = e.pointee.disp
    if e.pointee.ripRel {
      a &+= rip &+ UInt64(e.pointee.len)
    } else {
      if e.pointee.rm != 0xFF { a &+= r[Int(e.pointee.rm)] }
      if e.pointee.index != 0xFF { a &+= r[Int(e.pointee.index)] &<< UInt64(e.pointee.scale) }
    }
    return mode64 ? a : a & 0xFFFF_FFFF
  }

  @inline(__always) func dcReadE(_ e: UnsafePointer<DecodedInsn>, _ s: Int) throws(Fault) -> UInt64
  {
    if e.pointee.isReg { return dcGet(Int(e.pointee.rm), s) }
    return try readMem(Int(e.pointee.seg), dcAddr(e), s)
  }

  @inline(__always) func dcWriteE(_ e: UnsafePointer<DecodedInsn>, _ s: Int, _ v: UInt64)
    throws(Fault)
  {
    if e.pointee.isReg {
      dcSet(Int(e.pointee.rm), s, v)
      return
    }
    try writeMem(Int(e.pointee.seg), dcAddr(e), s, v)
  }

  @inline(__always) func dcTarget(_ e: UnsafePointer<DecodedInsn>) -> UInt64 {
    let t = rip &+ UInt64(e.pointee.len) &+ e.pointee.disp
    if mode64 { return t }
    return e.pointee.size == 2 ? t & 0xFFFF : t & 0xFFFF_FFFF
  }

  /// Executes a cached instruction; mirrors `execute()` for the same forms.
  @inline(__always) func dcExecute(_ e: UnsafePointer<DecodedInsn>) throws(Fault) {
    startRIP = rip
    ipos = Int(e.pointee.len)
    rex = e.pointee.rex
    // One copy of the handlers per common operand size, so size tests fold away.
    let s = Int(e.pointee.size)
    if s == 8 {
      try dcRun(e, 8)
    } else if s == 4 {
      try dcRun(e, 4)
    } else {
      try dcRun(e, s)
    }
  }

  @_transparent func dcRun(_ e: UnsafePointer<DecodedInsn>, _ s: Int) throws(Fault) {
    switch e.pointee.kind {
    case DC.aluEG:
      let res = dcALU(Int(e.pointee.op), try dcReadE(e, s), dcGet(Int(e.pointee.reg), s), s)
      if e.pointee.op != 7 { try dcWriteE(e, s, res) }
    case DC.aluGE:
      let res = dcALU(Int(e.pointee.op), dcGet(Int(e.pointee.reg), s), try dcReadE(e, s), s)
      if e.pointee.op != 7 { dcSet(Int(e.pointee.reg), s, res) }
    case DC.aluAI:
      let res = dcALU(Int(e.pointee.op), dcGet(0, s), e.pointee.imm, s)
      if e.pointee.op != 7 { dcSet(0, s, res) }
    case DC.aluEI:
      let res = dcALU(Int(e.pointee.op), try dcReadE(e, s), e.pointee.imm, s)
      if e.pointee.op != 7 { try dcWriteE(e, s, res) }
    case DC.test:
      setLogicFlags(s, try dcReadE(e, s) & dcGet(Int(e.pointee.reg), s))
    case DC.movEG:
      try dcWriteE(e, s, dcGet(Int(e.pointee.reg), s))
    case DC.movGE:
      dcSet(Int(e.pointee.reg), s, try dcReadE(e, s))
    case DC.lea:
      dcSet(Int(e.pointee.reg), s, dcAddr(e))
    case DC.movsxd:
      let v = try dcReadE(e, 4)
      dcSet(Int(e.pointee.reg), s, s == 8 ? sext(v, 4) : v)
    case DC.jcc:
      if cond(Int(e.pointee.op)) {
        rip = dcTarget(e)
        return
      }
    case DC.jmp:
      rip = dcTarget(e)
      return
    case DC.call:
      let t = dcTarget(e)
      try push((rip &+ UInt64(e.pointee.len)) & codeMask, s)
      rip = t
      return
    case DC.ret:
      let t = try pop(s)
      setSP((r[4] &+ e.pointee.imm) & stackMask)
      rip = s == 2 ? t & 0xFFFF : t
      return
    case DC.pushR:
      try push(dcGet(Int(e.pointee.reg), s), s)
    case DC.popR:
      let v = try pop(s)
      dcSet(Int(e.pointee.reg), s, v)
    case DC.movRI:
      if s == 8 {
        r[Int(e.pointee.reg)] = e.pointee.imm
      } else {
        dcSet(Int(e.pointee.reg), s, e.pointee.imm)
      }
    case DC.shift:
      let c = e.pointee.imm == 0x100 ? r[1] & 0xFF : e.pointee.imm
      let v = try dcReadE(e, s)
      try dcWriteE(e, s, dcShift(Int(e.pointee.op), v, c, s))
    case DC.incdec:
      try dcWriteE(e, s, incdec(try dcReadE(e, s), s, dec: e.pointee.op == 1))
    case DC.callInd:
      let t = try dcReadE(e, s)
      try push((rip &+ UInt64(e.pointee.len)) & codeMask, s)
      rip = s == 2 ? t & 0xFFFF : t
      return
    case DC.jmpInd:
      let t = try dcReadE(e, s)
      rip = s == 2 ? t & 0xFFFF : t
      return
    case DC.pushE:
      try push(try dcReadE(e, s), s)
    case DC.movzx:
      dcSet(Int(e.pointee.reg), s, try dcReadE(e, Int(e.pointee.op)))
    case DC.movsx:
      let ss = Int(e.pointee.op)
      dcSet(Int(e.pointee.reg), s, sext(try dcReadE(e, ss), ss) & sizeMask(s))
    case DC.imul:
      dcSet(Int(e.pointee.reg), s, dcIMul(dcGet(Int(e.pointee.reg), s), try dcReadE(e, s), s))
    case DC.cmov:
      let v = try dcReadE(e, s)
      if cond(Int(e.pointee.op)) {
        dcSet(Int(e.pointee.reg), s, v)
      } else if s == 4 {
        r[Int(e.pointee.reg)] &= 0xFFFF_FFFF
      }
    case DC.setcc:
      try dcWriteE(e, 1, cond(Int(e.pointee.op)) ? 1 : 0)
    case DC.testI:
      setLogicFlags(s, try dcReadE(e, s) & e.pointee.imm)
    case DC.movEI:
      try dcWriteE(e, s, e.pointee.imm)
    case DC.leave:
      let sp = r[5] & stackMask
      let v = try readMem(SS, sp, s)
      setSP(sp &+ UInt64(s))
      dcSet(5, s, v)
    default:  // DC.nop
      break
    }
    rip = (rip &+ UInt64(e.pointee.len)) & codeMask
  }
}
