/// Every instruction form the generator covers, by name.
///
/// A form's generator picks operands and values, emits one instruction (plus,
/// at most, a helper that sets up a value it needs), records which registers
/// it wrote and how it changes the set of undefined flags. It returns false
/// when the current case cannot host it (e.g. a register it needs was already
/// overwritten); the builder then picks another form.

public struct Form {
  public let name: String
  let gen: (Gen) -> Bool
}

private let S = Flag.status
private let AF = Flag.af
private let CF = Flag.cf
private let OF = Flag.of
private let ZF = Flag.zf
private let SF = Flag.sf
private let PF = Flag.pf

private func bits(_ size: Int) -> String { String(size * 8) }
private let vSizes = [2, 4, 8]
private let allSizes = [1, 2, 4, 8]
private let ccNames = [
  "o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g",
]

/// Prefix + REX.W/0x66 + opcode + immediate, for forms without ModRM (accumulator, string ops).
private func plain(
  _ prefixes: [UInt8] = [], size: Int, noW: Bool = false, _ op: [UInt8], imm: [UInt8] = []
)
  -> Encoded
{
  var b = prefixes
  if size == 2 { b.append(0x66) }
  if size == 8 && !noW { b.append(0x48) }
  return Encoded(bytes: b + op + imm, ripFixup: nil)
}

public final class FormTable {
  public private(set) var forms: [Form] = []

  public init() {
    alu()
    unary()
    shifts()
    multiplyDivide()
    moves()
    exchanges()
    bitOps()
    conditionals()
    misc()
    stack()
    strings()
    faults()
    sse()  // FormsSSE.swift
    sse3To42()  // FormsSSE4.swift
    bmi()  // FormsBMI.swift
    x87()  // FormsX87.swift
  }

  func add(_ name: String, _ gen: @escaping (Gen) -> Bool) {
    forms.append(Form(name: name, gen: gen))
  }

  /// Indices of forms whose name matches `filter` (all when nil).
  public func select(_ filter: ((String) -> Bool)?) -> [Int] {
    forms.indices.filter { filter?(forms[$0].name) ?? true }
  }

  // MARK: Generic shapes

  /// Prefixes that must not change the meaning: segment overrides (ignored in
  /// 64-bit mode for ES/CS/SS/DS), 0x66 on byte operations, and REP/REPNE on
  /// one-byte opcodes that are not string instructions.
  static func noise(_ g: Gen, rm: RMOperand, size: Int, op: [UInt8]) -> [UInt8] {
    var p: [UInt8] = []
    if rm.isMem && g.rng.chance(8) { p.append(g.rng.pick([0x26, 0x2E, 0x36, 0x3E])) }
    if size == 1 && op.count == 1 && g.rng.chance(5) { p.append(0x66) }
    if op.count == 1 && g.rng.chance(3) { p.append(g.rng.pick([0xF2, 0xF3])) }
    return p
  }

  enum Dir { case toRM, toReg, none }

  /// op r/m, reg (or reg, r/m) with ModRM.
  func rmReg(
    _ name: String, _ op: [UInt8], size: Int, dir: Dir, reads: UInt64 = 0, lockable: Bool = false,
    memPercent: Int = 40, regIsSrcOnly: Bool = false, effect: @escaping (Gen) -> Void
  ) {
    add(name) { g in
      g.needFlags(reads)
      var rm: RMOperand
      var reg: Int
      if size == 1 {
        var legacy = g.rng.chance(40)
        if g.rng.chance(memPercent) {
          rm = .mem(g.memOperand(size: 1))
          if Gen.needsRex(rm) { legacy = false }
        } else {
          rm = .reg(g.byteReg(legacy: legacy, dest: dir == .toRM))
        }
        reg = g.byteReg(legacy: legacy, dest: dir == .toReg)
      } else {
        rm = g.rmOperand(size: size, write: dir == .toRM, memPercent: memPercent)
        reg = dir == .toReg ? g.pickDest() : g.pickSrc()
      }
      let lock: [UInt8] = lockable && dir == .toRM && rm.isMem && g.rng.chance(20) ? [0xF0] : []
      g.emit(
        Asm.encode(
          prefixes: FormTable.noise(g, rm: rm, size: size, op: op) + lock, size: size, opcode: op,
          reg: reg, regIsByte: size == 1, rm: rm,
          rmIsByte: size == 1))
      if dir == .toRM, case .reg(let r) = rm { g.writtenByte(r) }
      if dir == .toReg { g.writtenByte(reg) }
      effect(g)
      return true
    }
  }

  /// op r/m, imm with ModRM /digit.
  func rmImm(
    _ name: String, _ op: [UInt8], digit: Int, size: Int, immSize: Int, writes: Bool,
    reads: UInt64 = 0, lockable: Bool = false, effect: @escaping (Gen) -> Void
  ) {
    add(name) { g in
      g.needFlags(reads)
      var rm: RMOperand
      if size == 1 && !g.rng.chance(40) {
        rm = .reg(g.byteReg(legacy: g.rng.chance(40), dest: writes))
      } else {
        rm = g.rmOperand(size: size, write: writes)
      }
      let lock: [UInt8] = lockable && writes && rm.isMem && g.rng.chance(20) ? [0xF0] : []
      g.emit(
        Asm.encode(
          prefixes: FormTable.noise(g, rm: rm, size: size, op: op) + lock, size: size, opcode: op,
          reg: digit, rm: rm, rmIsByte: size == 1,
          imm: Asm.imm(g.value(), immSize)))
      if writes, case .reg(let r) = rm { g.writtenByte(r) }
      effect(g)
      return true
    }
  }

  /// op r/m with ModRM /digit, no immediate.
  func rmOnly(
    _ name: String, _ op: [UInt8], digit: Int, size: Int, writes: Bool, reads: UInt64 = 0,
    lockable: Bool = false, effect: @escaping (Gen) -> Void
  ) {
    add(name) { g in
      g.needFlags(reads)
      var rm: RMOperand
      if size == 1 && !g.rng.chance(40) {
        rm = .reg(g.byteReg(legacy: g.rng.chance(40), dest: writes))
      } else {
        rm = g.rmOperand(size: size, write: writes)
      }
      let lock: [UInt8] = lockable && writes && rm.isMem && g.rng.chance(20) ? [0xF0] : []
      g.emit(
        Asm.encode(
          prefixes: FormTable.noise(g, rm: rm, size: size, op: op) + lock, size: size, opcode: op,
          reg: digit, rm: rm, rmIsByte: size == 1))
      if writes, case .reg(let r) = rm { g.writtenByte(r) }
      effect(g)
      return true
    }
  }

  // MARK: ALU

  func alu() {
    let names = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
    for k in 0..<8 {
      let n = names[k]
      let logic = k == 1 || k == 4 || k == 6
      let reads: UInt64 = (k == 2 || k == 3) ? CF : 0
      let writes = k != 7
      let fx: (Gen) -> Void = { g in
        if logic { g.flags(defined: S & ~AF, undefined: AF) } else { g.flags(defined: S) }
      }
      let base = UInt8(k * 8)
      rmReg(
        "\(n) r/m8,r8", [base], size: 1, dir: writes ? .toRM : .none, reads: reads, lockable: true,
        effect: fx)
      rmReg(
        "\(n) r8,r/m8", [base + 2], size: 1, dir: writes ? .toReg : .none, reads: reads, effect: fx)
      for s in vSizes {
        rmReg(
          "\(n) r/m\(bits(s)),r\(bits(s))", [base + 1], size: s, dir: writes ? .toRM : .none,
          reads: reads, lockable: true, effect: fx)
        rmReg(
          "\(n) r\(bits(s)),r/m\(bits(s))", [base + 3], size: s, dir: writes ? .toReg : .none,
          reads: reads, effect: fx)
        rmImm(
          "\(n) r/m\(bits(s)),imm\(bits(min(s, 4)))", [0x81], digit: k, size: s, immSize: min(s, 4),
          writes: writes, reads: reads, lockable: true, effect: fx)
        rmImm(
          "\(n) r/m\(bits(s)),imm8", [0x83], digit: k, size: s, immSize: 1, writes: writes,
          reads: reads, lockable: true, effect: fx)
        let accName = s == 2 ? "ax" : s == 4 ? "eax" : "rax"
        add("\(n) \(accName),imm\(bits(min(s, 4)))") { g in
          g.needFlags(reads)
          g.emit(plain(size: s, [base + 5], imm: Asm.imm(g.value(), min(s, 4))))
          if writes { g.written(0) }
          fx(g)
          return true
        }
      }
      rmImm(
        "\(n) r/m8,imm8", [0x80], digit: k, size: 1, immSize: 1, writes: writes, reads: reads,
        lockable: true, effect: fx)
      add("\(n) al,imm8") { g in
        g.needFlags(reads)
        g.emit(plain(size: 1, [base + 4], imm: Asm.imm(g.value(), 1)))
        if writes { g.written(0) }
        fx(g)
        return true
      }
    }
    // TEST
    let tfx: (Gen) -> Void = { g in g.flags(defined: S & ~AF, undefined: AF) }
    rmReg("test r/m8,r8", [0x84], size: 1, dir: .none, effect: tfx)
    rmImm("test r/m8,imm8", [0xF6], digit: 0, size: 1, immSize: 1, writes: false, effect: tfx)
    add("test al,imm8") { g in
      g.emit(plain(size: 1, [0xA8], imm: Asm.imm(g.value(), 1)))
      tfx(g)
      return true
    }
    for s in vSizes {
      rmReg("test r/m\(bits(s)),r\(bits(s))", [0x85], size: s, dir: .none, effect: tfx)
      rmImm(
        "test r/m\(bits(s)),imm\(bits(min(s, 4)))", [0xF7], digit: 0, size: s, immSize: min(s, 4),
        writes: false, effect: tfx)
      add("test \(s == 2 ? "ax" : s == 4 ? "eax" : "rax"),imm\(bits(min(s, 4)))") { g in
        g.emit(plain(size: s, [0xA9], imm: Asm.imm(g.value(), min(s, 4))))
        tfx(g)
        return true
      }
    }
  }

  // MARK: INC DEC NEG NOT

  func unary() {
    for s in allSizes {
      let b = bits(s)
      let grp: UInt8 = s == 1 ? 0xFE : 0xFF
      let g3: UInt8 = s == 1 ? 0xF6 : 0xF7
      rmOnly("inc r/m\(b)", [grp], digit: 0, size: s, writes: true, lockable: true) {
        $0.flags(defined: S & ~CF)
      }
      rmOnly("dec r/m\(b)", [grp], digit: 1, size: s, writes: true, lockable: true) {
        $0.flags(defined: S & ~CF)
      }
      rmOnly("not r/m\(b)", [g3], digit: 2, size: s, writes: true, lockable: true) { _ in }
      rmOnly("neg r/m\(b)", [g3], digit: 3, size: s, writes: true, lockable: true) {
        $0.flags(defined: S)
      }
    }
  }

  // MARK: Shifts and rotates

  static func shiftCounts(_ size: Int, _ g: Gen) -> UInt64 {
    let w = UInt64(size * 8)
    switch g.rng.below(8) {
    case 0: return 0
    case 1: return 1
    case 2: return w - 1
    case 3: return w
    case 4: return w + 1
    case 5: return g.rng.pick([31, 32, 33, 63, 64, 65, 255] as [UInt64])
    default: return UInt64(g.rng.below(size == 8 ? 64 : 32))
    }
  }

  /// Undefined/defined flags of a group-2 op for a known count (nil = unknown).
  static func shiftEffect(op: Int, size: Int, count: UInt64?, g: Gen) {
    let w = UInt64(size * 8)
    guard let raw = count else {
      // Unknown count: anything that may be undefined for some count.
      var und = OF
      if op >= 4 { und |= AF }
      if (op == 4 || op == 5) && size <= 2 { und |= CF }
      g.u |= und
      return
    }
    let c = raw & (size == 8 ? 0x3F : 0x1F)
    if c == 0 { return }
    let ofBit: UInt64 = c == 1 ? 0 : OF
    switch op {
    case 0, 1, 2, 3:
      g.flags(defined: (CF | OF) & ~ofBit, undefined: ofBit)
    default:
      var und = AF | ofBit
      if (op == 4 || op == 5) && c >= w { und |= CF }
      g.flags(defined: (S & ~und), undefined: und)
    }
  }

  func shifts() {
    let names = ["rol", "ror", "rcl", "rcr", "shl", "shr", "", "sar"]
    for op in [0, 1, 2, 3, 4, 5, 7] {
      let reads: UInt64 = (op == 2 || op == 3) ? CF : 0
      for s in allSizes {
        let b = bits(s)
        let n = names[op]
        let one: UInt8 = s == 1 ? 0xD0 : 0xD1
        let cl: UInt8 = s == 1 ? 0xD2 : 0xD3
        let ib: UInt8 = s == 1 ? 0xC0 : 0xC1
        rmOnly("\(n) r/m\(b),1", [one], digit: op, size: s, writes: true, reads: reads) { g in
          FormTable.shiftEffect(op: op, size: s, count: 1, g: g)
        }
        add("\(n) r/m\(b),imm8") { g in
          g.needFlags(reads)
          let count = FormTable.shiftCounts(s, g)
          let rm = FormTable.destRM(g, size: s)
          g.emit(
            Asm.encode(
              size: s, opcode: [ib], reg: op, rm: rm, rmIsByte: s == 1, imm: [UInt8(count & 0xFF)]))
          if case .reg(let r) = rm { g.writtenByte(r) }
          FormTable.shiftEffect(op: op, size: s, count: count, g: g)
          return true
        }
        add("\(n) r/m\(b),cl") { g in
          g.needFlags(reads)
          let count = g.knownValue(1, or: { (g.rng.next() & ~0xFF) | FormTable.shiftCounts(s, g) })
          var rm = FormTable.destRM(g, size: s)
          if case .reg(let r) = rm, r == 1 || r == 17 { rm = .reg(s == 1 ? 2 : 3) }
          g.emit(Asm.encode(size: s, opcode: [cl], reg: op, rm: rm, rmIsByte: s == 1))
          if case .reg(let r) = rm { g.writtenByte(r) }
          FormTable.shiftEffect(op: op, size: s, count: count.map { $0 & 0xFF }, g: g)
          return true
        }
      }
    }
    // SHLD / SHRD
    for (n, base) in [("shld", UInt8(0xA4)), ("shrd", UInt8(0xAC))] {
      for s in vSizes {
        let b = bits(s)
        func effect(_ g: Gen, _ count: UInt64?) {
          guard let raw = count else {
            g.u |= OF | AF
            return
          }
          let c = raw & (s == 8 ? 0x3F : 0x1F)
          if c == 0 { return }
          let ofBit: UInt64 = c == 1 ? 0 : OF
          g.flags(defined: S & ~(AF | ofBit), undefined: AF | ofBit)
        }
        add("\(n) r/m\(b),r\(b),imm8") { g in
          var count = FormTable.shiftCounts(s, g)
          if s == 2 && (count & 0x1F) > 16 { count = UInt64(g.rng.below(17)) }
          let rm = g.rmOperand(size: s, write: true)
          let reg = g.pickSrc()
          g.emit(
            Asm.encode(size: s, opcode: [0x0F, base], reg: reg, rm: rm, imm: [UInt8(count & 0xFF)]))
          if case .reg(let r) = rm { g.written(r) }
          effect(g, count)
          return true
        }
        add("\(n) r/m\(b),r\(b),cl") { g in
          guard
            let count = g.knownValue(
              1,
              or: {
                var c = FormTable.shiftCounts(s, g)
                if s == 2 && (c & 0x1F) > 16 { c = UInt64(g.rng.below(17)) }
                return (g.rng.next() & ~0xFF) | c
              })
          else { return false }
          if s == 2 && (count & 0x1F) > 16 { return false }
          var rm = g.rmOperand(size: s, write: true)
          if case .reg(1) = rm { rm = .reg(2) }
          let reg = g.pickSrc()
          g.emit(Asm.encode(size: s, opcode: [0x0F, base + 1], reg: reg, rm: rm))
          if case .reg(let r) = rm { g.written(r) }
          effect(g, count & 0xFF)
          return true
        }
      }
    }
  }

  /// A writable r/m operand (byte numbering for size 1).
  static func destRM(_ g: Gen, size: Int) -> RMOperand {
    if g.rng.chance(35) { return .mem(g.memOperand(size: size)) }
    if size == 1 { return .reg(g.byteReg(legacy: g.rng.chance(40), dest: true)) }
    return .reg(g.pickDest())
  }

  // MARK: MUL IMUL DIV IDIV

  func multiplyDivide() {
    for s in allSizes {
      let b = bits(s)
      let op: UInt8 = s == 1 ? 0xF6 : 0xF7
      let mulFx: (Gen) -> Void = { g in
        g.flags(defined: CF | OF, undefined: SF | ZF | AF | PF)
        g.written(0)
        if s > 1 { g.written(2) }
      }
      rmOnly("mul r/m\(b)", [op], digit: 4, size: s, writes: false, effect: mulFx)
      rmOnly("imul r/m\(b)", [op], digit: 5, size: s, writes: false, effect: mulFx)
      for (n, digit) in [("div", 6), ("idiv", 7)] {
        add("\(n) r/m\(b)") { g in
          // Mostly dividends that fit, so that both results and #DE are common.
          if s > 1, g.known[2], g.assigned[2] == nil {
            switch g.rng.below(4) {
            case 0: g.assigned[2] = 0
            case 1: g.assigned[2] = digit == 7 ? ~0 : UInt64(g.rng.below(16))
            case 2: g.assigned[2] = UInt64(g.rng.below(4))
            default: break
            }
          }
          if s == 1, g.known[0], g.assigned[0] == nil, g.rng.chance(60) {
            g.assigned[0] = (g.rng.next() & ~0xFFFF) | UInt64(g.rng.below(0x400))
          }
          var rm = g.rmOperand(size: s, write: false)
          if case .reg(let r) = rm {
            if s == 1 {
              rm = .reg(g.byteReg(legacy: g.rng.chance(40), dest: false))
            } else if g.known[r], g.assigned[r] == nil, g.rng.chance(70) {
              g.assigned[r] = g.value() | UInt64(g.rng.below(2)) << UInt64(g.rng.below(s * 8))
            }
          }
          g.emit(Asm.encode(size: s, opcode: [op], reg: digit, rm: rm, rmIsByte: s == 1))
          g.flags(defined: 0, undefined: S)
          g.written(0)
          if s > 1 { g.written(2) }
          return true
        }
      }
    }
    for s in vSizes {
      let b = bits(s)
      let fx: (Gen) -> Void = { g in g.flags(defined: CF | OF, undefined: SF | ZF | AF | PF) }
      rmReg("imul r\(b),r/m\(b)", [0x0F, 0xAF], size: s, dir: .toReg, effect: fx)
      add("imul r\(b),r/m\(b),imm8") { g in
        let rm = g.rmOperand(size: s, write: false)
        let reg = g.pickDest()
        g.emit(Asm.encode(size: s, opcode: [0x6B], reg: reg, rm: rm, imm: Asm.imm(g.value(), 1)))
        g.written(reg)
        fx(g)
        return true
      }
      add("imul r\(b),r/m\(b),imm\(bits(min(s, 4)))") { g in
        let rm = g.rmOperand(size: s, write: false)
        let reg = g.pickDest()
        g.emit(
          Asm.encode(size: s, opcode: [0x69], reg: reg, rm: rm, imm: Asm.imm(g.value(), min(s, 4))))
        g.written(reg)
        fx(g)
        return true
      }
    }
  }

  // MARK: MOV family

  func moves() {
    let none: (Gen) -> Void = { _ in }
    rmReg("mov r/m8,r8", [0x88], size: 1, dir: .toRM, effect: none)
    rmReg("mov r8,r/m8", [0x8A], size: 1, dir: .toReg, effect: none)
    rmImm("mov r/m8,imm8", [0xC6], digit: 0, size: 1, immSize: 1, writes: true, effect: none)
    add("mov r8,imm8") { g in
      let r = g.byteReg(legacy: g.rng.chance(40), dest: true)
      g.emit(
        Asm.encodeOpReg(size: 1, opcode: [0xB0], reg: r, isByte: true, imm: Asm.imm(g.value(), 1)))
      g.writtenByte(r)
      return true
    }
    for s in vSizes {
      let b = bits(s)
      rmReg("mov r/m\(b),r\(b)", [0x89], size: s, dir: .toRM, effect: none)
      rmReg("mov r\(b),r/m\(b)", [0x8B], size: s, dir: .toReg, effect: none)
      rmImm(
        "mov r/m\(b),imm\(bits(min(s, 4)))", [0xC7], digit: 0, size: s, immSize: min(s, 4),
        writes: true, effect: none)
      add("mov r\(b),imm\(b)") { g in
        let r = g.pickDest()
        g.emit(Asm.encodeOpReg(size: s, opcode: [0xB8], reg: r, imm: Asm.imm(g.value(), s)))
        g.written(r)
        return true
      }
      add("lea r\(b),m") { g in
        var m = MemOperand()
        m.base = g.rng.chance(80) ? g.pickSrc() : nil
        m.index = g.rng.chance(50) ? g.pickSrc() : nil
        if m.index == 4 { m.index = nil }
        m.scale = g.rng.pick([1, 2, 4, 8])
        m.disp = Int64(Int32(truncatingIfNeeded: g.value()))
        if g.rng.chance(30) { m.disp = Int64(Int8(truncatingIfNeeded: m.disp)) }
        m.addr32 = g.rng.chance(20)
        if g.rng.chance(10) {
          m = MemOperand()
          m.ripRelative = true
          m.target = Layout.code &+ UInt64(g.rng.below(1 << 20))
        }
        let r = g.pickDest()
        g.emit(Asm.encode(size: s, opcode: [0x8D], reg: r, rm: .mem(m)))
        g.written(r)
        return true
      }
    }
    for s in allSizes {
      let b = bits(s)
      let acc = ["al", "ax", "eax", "rax"][s == 1 ? 0 : s == 2 ? 1 : s == 4 ? 2 : 3]
      add("mov \(acc),moffs\(b)") { g in
        let t = g.dataTarget(size: s)
        g.maybePatch(t, size: s)
        g.emit(plain(size: s, [s == 1 ? 0xA0 : 0xA1], imm: Asm.imm(t, 8)))
        g.written(0)
        return true
      }
      add("mov moffs\(b),\(acc)") { g in
        let t = g.dataTarget(size: s)
        g.emit(plain(size: s, [s == 1 ? 0xA2 : 0xA3], imm: Asm.imm(t, 8)))
        return true
      }
    }
    for s in vSizes {
      let b = bits(s)
      rmReg("movzx r\(b),r/m8", [0x0F, 0xB6], size: s, dir: .toReg, effect: none)
      rmReg("movsx r\(b),r/m8", [0x0F, 0xBE], size: s, dir: .toReg, effect: none)
      if s > 2 {
        rmReg("movzx r\(b),r/m16", [0x0F, 0xB7], size: s, dir: .toReg, effect: none)
        rmReg("movsx r\(b),r/m16", [0x0F, 0xBF], size: s, dir: .toReg, effect: none)
      }
    }
    rmReg("movsxd r64,r/m32", [0x63], size: 8, dir: .toReg, effect: none)
    // CBW family
    for (s, n) in [(2, "cbw"), (4, "cwde"), (8, "cdqe")] {
      add(n) { g in
        g.emit(plain(size: s, [0x98]))
        g.written(0)
        return true
      }
    }
    for (s, n) in [(2, "cwd"), (4, "cdq"), (8, "cqo")] {
      add(n) { g in
        g.emit(plain(size: s, [0x99]))
        g.written(2)
        return true
      }
    }
    for s in [4, 8] {
      add("bswap r\(bits(s))") { g in
        let r = g.pickDest()
        g.emit(Asm.encodeOpReg(size: s, opcode: [0x0F, 0xC8], reg: r))
        g.written(r)
        return true
      }
    }
    add("xlat") { g in
      guard let bx = g.knownValue(3, or: { g.dataTarget(size: 256) }) else { return false }
      guard bx >= Layout.data, bx <= Layout.data + Layout.dataSize - 256 else { return false }
      g.emit(plain(size: g.rng.chance(30) ? 8 : 4, [0xD7]))
      g.written(0)
      return true
    }
  }

  // MARK: XCHG XADD CMPXCHG

  func exchanges() {
    for s in allSizes {
      let b = bits(s)
      add("xchg r/m\(b),r\(b)") { g in
        var rm: RMOperand
        var legacy = g.rng.chance(40)
        if g.rng.chance(40) {
          rm = .mem(g.memOperand(size: s))
          if Gen.needsRex(rm) { legacy = false }
        } else {
          rm = .reg(s == 1 ? g.byteReg(legacy: legacy, dest: true) : g.pickDest())
        }
        let reg = s == 1 ? g.byteReg(legacy: legacy, dest: true) : g.pickDest()
        g.emit(
          Asm.encode(
            size: s, opcode: [s == 1 ? 0x86 : 0x87], reg: reg, regIsByte: s == 1, rm: rm,
            rmIsByte: s == 1))
        g.writtenByte(reg)
        if case .reg(let r) = rm { g.writtenByte(r) }
        return true
      }
      if s > 1 {
        add("xchg \(["", "", "ax", "", "eax", "", "", "", "rax"][s]),r\(b)") { g in
          let r = g.pickDest()
          g.emit(Asm.encodeOpReg(size: s, opcode: [0x90], reg: r))
          g.written(0)
          g.written(r)
          return r != 0 || s != 4
        }
      }
      let addFx: (Gen) -> Void = { g in g.flags(defined: S) }
      add("xadd r/m\(b),r\(b)") { g in
        var rm: RMOperand
        var legacy = g.rng.chance(40)
        if g.rng.chance(50) {
          rm = .mem(g.memOperand(size: s))
          if Gen.needsRex(rm) { legacy = false }
        } else {
          rm = .reg(s == 1 ? g.byteReg(legacy: legacy, dest: true) : g.pickDest())
        }
        let reg = s == 1 ? g.byteReg(legacy: legacy, dest: true) : g.pickDest()
        let lock: [UInt8] = rm.isMem && g.rng.chance(30) ? [0xF0] : []
        g.emit(
          Asm.encode(
            prefixes: lock, size: s, opcode: [0x0F, s == 1 ? 0xC0 : 0xC1], reg: reg,
            regIsByte: s == 1,
            rm: rm, rmIsByte: s == 1))
        g.writtenByte(reg)
        if case .reg(let r) = rm { g.writtenByte(r) }
        addFx(g)
        return true
      }
      add("cmpxchg r/m\(b),r\(b)") { g in
        var rm: RMOperand
        var legacy = g.rng.chance(40)
        if g.rng.chance(50) {
          let m = g.memOperand(size: s)
          rm = .mem(m)
          if Gen.needsRex(rm) { legacy = false }
          // Often make the comparison succeed.
          if g.rng.chance(50), g.known[0], g.assigned[0] == nil, let p = g.patches.last,
            p.address == m.target & ~7, m.target & 7 == 0
          {
            g.assigned[0] =
              s == 8
              ? p.value : (g.rng.next() << UInt64(s * 8)) | (p.value & ((1 << UInt64(s * 8)) - 1))
          }
        } else {
          rm = .reg(s == 1 ? g.byteReg(legacy: legacy, dest: true) : g.pickDest())
          // Vendor difference: when the comparison fails, Intel writes the 32-bit
          // destination back (zeroing bits 63:32), AMD leaves it alone. Keep those
          // bits zero so both behaviours agree (docs/DIFFTEST.md).
          if s == 4, case .reg(let r) = rm, r != 0 {
            guard let v = g.knownValue(r, or: { g.value() & 0xFFFF_FFFF }), v >> 32 == 0 else {
              return false
            }
          }
          if g.rng.chance(30), case .reg(let r) = rm, s > 1, g.known[r], g.known[0] {
            let v = g.knownValue(r, or: { g.value() })!
            if g.assigned[0] == nil { g.assigned[0] = v }
          }
        }
        let reg = s == 1 ? g.byteReg(legacy: legacy, dest: false) : g.pickSrc()
        let lock: [UInt8] = rm.isMem && g.rng.chance(30) ? [0xF0] : []
        g.emit(
          Asm.encode(
            prefixes: lock, size: s, opcode: [0x0F, s == 1 ? 0xB0 : 0xB1], reg: reg,
            regIsByte: s == 1,
            rm: rm, rmIsByte: s == 1))
        g.written(0)
        if case .reg(let r) = rm { g.writtenByte(r) }
        g.flags(defined: S)
        return true
      }
    }
    for wide in [false, true] {
      add(wide ? "cmpxchg16b m128" : "cmpxchg8b m64") { g in
        let size = wide ? 16 : 8
        let t = g.dataTarget(size: size, align: wide ? 16 : 1)
        guard g.patches.count + 2 <= Layout.maxPatches else { return false }
        let lo = g.value()
        let hi = g.value()
        // Patch the exact bytes (8-byte units; the target may be unaligned for 8b).
        if t & 7 == 0 && !g.patched.contains(t) && !g.patched.contains(t + 8) {
          g.patched.insert(t)
          g.patches.append((t, lo))
          if wide {
            g.patched.insert(t + 8)
            g.patches.append((t + 8, hi))
          }
          if g.rng.chance(50), g.known[0], g.known[2], g.assigned[0] == nil, g.assigned[2] == nil {
            if wide {
              g.assigned[0] = lo
              g.assigned[2] = hi
            } else {
              g.assigned[0] = (g.rng.next() << 32) | (lo & 0xFFFF_FFFF)
              g.assigned[2] = (g.rng.next() << 32) | (lo >> 32)
            }
          }
        }
        let m = g.memOperand(size: size, target: t, patch: false)
        let lock: [UInt8] = g.rng.chance(40) ? [0xF0] : []
        g.emit(
          Asm.encode(prefixes: lock, size: wide ? 8 : 4, opcode: [0x0F, 0xC7], reg: 1, rm: .mem(m)))
        g.written(0)
        g.written(2)
        g.flags(defined: ZF)
        return true
      }
    }
  }

  // MARK: BT family, BSF/BSR

  func bitOps() {
    let names = ["bt", "bts", "btr", "btc"]
    let regOps: [UInt8] = [0xA3, 0xAB, 0xB3, 0xBB]
    for k in 0..<4 {
      for s in vSizes {
        let b = bits(s)
        let writes = k != 0
        let fx: (Gen) -> Void = { g in g.flags(defined: CF, undefined: OF | SF | AF | PF) }
        add("\(names[k]) r\(b),r\(b)") { g in
          let rm = g.pickDest()
          let reg = g.pickSrc()
          g.emit(Asm.encode(size: s, opcode: [0x0F, regOps[k]], reg: reg, rm: .reg(rm)))
          if writes { g.written(rm) }
          fx(g)
          return true
        }
        add("\(names[k]) m\(b),r\(b)") { g in
          // Bit offsets reach far from the operand: aim the operand at the middle of the region.
          let ea = Layout.data + 0x8000 + UInt64(g.rng.below(0x800)) * UInt64(s)
          let reach = s == 2 ? 0x7FFF : 0x7000 * 8
          let off = Int64(g.rng.below(2 * reach)) - Int64(reach)
          var reg = g.pickSrc()
          if reg == 4 { reg = 5 }
          guard
            let v = g.knownValue(
              reg,
              or: {
                s == 8
                  ? UInt64(bitPattern: off)
                  : (g.rng.next() << UInt64(s * 8))
                    | (UInt64(bitPattern: off) & ((1 << UInt64(s * 8)) - 1))
              })
          else { return false }
          // The unit actually accessed.
          let sv: Int64
          switch s {
          case 2: sv = Int64(Int16(truncatingIfNeeded: v))
          case 4: sv = Int64(Int32(truncatingIfNeeded: v))
          default: sv = Int64(bitPattern: v)
          }
          let unitOff = (sv >> Int64(s == 2 ? 4 : s == 4 ? 5 : 6)) * Int64(s)
          let unit = Int64(bitPattern: ea) &+ unitOff
          guard unit >= Int64(Layout.data), unit + Int64(s) <= Int64(Layout.data + Layout.dataSize)
          else { return false }
          g.maybePatch(UInt64(unit), size: s)
          let m = g.memOperand(size: s, target: ea, patch: false)
          if case .some(let bb) = m.base, bb == reg { return false }
          if case .some(let ii) = m.index, ii == reg { return false }
          let lock: [UInt8] = writes && g.rng.chance(20) ? [0xF0] : []
          g.emit(
            Asm.encode(prefixes: lock, size: s, opcode: [0x0F, regOps[k]], reg: reg, rm: .mem(m)))
          fx(g)
          return true
        }
        add("\(names[k]) r/m\(b),imm8") { g in
          let rm = g.rmOperand(size: s, write: writes)
          let lock: [UInt8] = writes && rm.isMem && g.rng.chance(20) ? [0xF0] : []
          g.emit(
            Asm.encode(
              prefixes: lock, size: s, opcode: [0x0F, 0xBA], reg: 4 + k, rm: rm,
              imm: [UInt8(truncatingIfNeeded: g.rng.next())]))
          if writes, case .reg(let r) = rm { g.written(r) }
          fx(g)
          return true
        }
      }
    }
    for s in vSizes {
      let b = bits(s)
      let fx: (Gen) -> Void = { g in g.flags(defined: ZF, undefined: CF | OF | SF | AF | PF) }
      rmReg("bsf r\(b),r/m\(b)", [0x0F, 0xBC], size: s, dir: .toReg, effect: fx)
      rmReg("bsr r\(b),r/m\(b)", [0x0F, 0xBD], size: s, dir: .toReg, effect: fx)
    }
  }

  // MARK: SETcc CMOVcc Jcc LOOP

  func conditionals() {
    for cc in 0..<16 {
      let reads = Flag.readBy(cc: cc)
      add("set\(ccNames[cc]) r/m8") { g in
        g.needFlags(reads)
        let rm = FormTable.destRM(g, size: 1)
        g.emit(
          Asm.encode(size: 1, opcode: [0x0F, 0x90 + UInt8(cc)], reg: 0, rm: rm, rmIsByte: true))
        if case .reg(let r) = rm { g.writtenByte(r) }
        return true
      }
      for s in vSizes {
        rmReg(
          "cmov\(ccNames[cc]) r\(bits(s)),r/m\(bits(s))", [0x0F, 0x40 + UInt8(cc)], size: s,
          dir: .toReg, reads: reads
        ) { _ in }
      }
      add("j\(ccNames[cc]) rel8") { g in
        g.needFlags(reads)
        g.emitJump(
          Encoded(bytes: [0x70 + UInt8(cc), 0], ripFixup: nil), relOffset: 1, width: 1,
          skip: 1 + g.rng.below(2))
        return true
      }
      add("j\(ccNames[cc]) rel32") { g in
        g.needFlags(reads)
        g.emitJump(
          Encoded(bytes: [0x0F, 0x80 + UInt8(cc), 0, 0, 0, 0], ripFixup: nil), relOffset: 2,
          width: 4,
          skip: 1 + g.rng.below(3))
        return true
      }
    }
    add("jmp rel8") { g in
      g.emitJump(
        Encoded(bytes: [0xEB, 0], ripFixup: nil), relOffset: 1, width: 1, skip: 1 + g.rng.below(2))
      return true
    }
    add("jmp rel32") { g in
      g.emitJump(
        Encoded(bytes: [0xE9, 0, 0, 0, 0], ripFixup: nil), relOffset: 1, width: 4,
        skip: 1 + g.rng.below(2))
      return true
    }
    for (n, op, readsZ) in [
      ("loop", UInt8(0xE2), false), ("loope", 0xE1, true), ("loopne", 0xE0, true),
    ] {
      add("\(n) rel8") { g in
        if readsZ { g.needFlags(ZF) }
        _ = g.knownValue(1, or: { g.rng.chance(50) ? UInt64(g.rng.below(3)) : g.value() })
        g.emitJump(
          Encoded(bytes: [op, 0], ripFixup: nil), relOffset: 1, width: 1, skip: 1 + g.rng.below(2))
        g.written(1)
        return true
      }
    }
    for (n, p) in [("jrcxz", [] as [UInt8]), ("jecxz", [0x67] as [UInt8])] {
      add("\(n) rel8") { g in
        _ = g.knownValue(
          1, or: { g.rng.chance(50) ? (g.rng.chance(50) ? 0 : g.rng.next() << 32) : g.value() })
        g.emitJump(
          Encoded(bytes: p + [0xE3, 0], ripFixup: nil), relOffset: p.count + 1, width: 1,
          skip: 1 + g.rng.below(2))
        return true
      }
    }
  }

  // MARK: Flags and no-ops

  func misc() {
    // A REX prefix that is not immediately before the opcode is ignored;
    // with two REX prefixes only the last one counts.
    add("alu r16,r16 with an ignored REX before 0x66") { g in
      let op = UInt8(g.rng.below(8) * 8 + 1)
      let a = g.rng.below(8)
      var b = g.rng.below(8)
      if b == 4 && op != 0x39 { b = 5 }
      let rex = UInt8(0x40 + g.rng.below(16))
      g.needFlags(op == 0x11 || op == 0x19 ? CF : 0)
      g.emit(Encoded(bytes: [rex, 0x66, op, 0xC0 | UInt8(a << 3) | UInt8(b)], ripFixup: nil))
      if op != 0x39 { g.written(b) }
      if op == 0x09 || op == 0x21 || op == 0x31 {
        g.flags(defined: S & ~AF, undefined: AF)
      } else {
        g.flags(defined: S)
      }
      return true
    }
    // Self-modifying code: a store into the immediate of an instruction that
    // follows (directly, or after a jmp +0), which must then execute the new value.
    for viaJump in [false, true] {
      add("smc: store into the next instruction\(viaJump ? " (then jmp)" : "")") { g in
        let v = UInt8(truncatingIfNeeded: g.value())
        let old = UInt8(truncatingIfNeeded: g.value())
        let r = g.byteReg(legacy: false, dest: true)
        let mov = Asm.encodeOpReg(size: 1, opcode: [0xB0], reg: r, isByte: true, imm: [old])
        // mov byte [rip + d], v   with d reaching the imm8 of `mov r8, imm8`.
        let d = UInt8((viaJump ? 2 : 0) + mov.bytes.count - 1)
        g.emit(Encoded(bytes: [0xC6, 0x05, d, 0, 0, 0, v], ripFixup: nil))
        if viaJump { g.emitHelper(Encoded(bytes: [0xEB, 0x00], ripFixup: nil)) }
        g.emitHelper(mov)
        g.writtenByte(r)
        return true
      }
    }
    add("mov r64,r/m64 with two REX prefixes") { g in
      let first = UInt8(0x40 + g.rng.below(16))
      let r = g.pickDest()
      let src = g.pickSrc()
      let e = Asm.encode(size: 8, opcode: [0x8B], reg: r, rm: .reg(src))
      g.emit(Encoded(bytes: [first] + e.bytes, ripFixup: nil))
      g.written(r)
      return true
    }
    for (n, digit, pushes) in [("jmp r64", 4, false), ("call r64", 2, true)] {
      add("\(n) (forward)") { g in
        let r = g.pickDest()
        if pushes { guard g.push(8) else { return false } }
        // lea r, [rip + target]; jmp/call r
        var m = MemOperand()
        m.ripRelative = true
        let lea = Asm.encode(size: 8, opcode: [0x8D], reg: r, rm: .mem(m))
        g.emitJump(
          Encoded(bytes: lea.bytes, ripFixup: nil), relOffset: lea.ripFixup!.offset, width: 4,
          skip: 1 + g.rng.below(2))
        g.items[g.items.count - 1].form = -1
        g.emit(Asm.encode(size: 4, opcode: [0xFF], reg: digit, rm: .reg(r)))
        g.written(r)
        return true
      }
    }
    add("clc") { g in
      g.emit(plain(size: 4, [0xF8]))
      g.flags(defined: CF)
      return true
    }
    add("stc") { g in
      g.emit(plain(size: 4, [0xF9]))
      g.flags(defined: CF)
      return true
    }
    add("cmc") { g in
      g.needFlags(CF)
      g.emit(plain(size: 4, [0xF5]))
      return true
    }
    add("cld") { g in
      g.emit(plain(size: 4, [0xFC]))
      return true
    }
    add("std") { g in
      g.emit(plain(size: 4, [0xFD]))
      return true
    }
    add("lahf") { g in
      g.needFlags(S & ~OF)
      g.emit(plain(size: 4, [0x9F]))
      g.written(0)
      return true
    }
    add("sahf") { g in
      g.emit(plain(size: 4, [0x9E]))
      g.flags(defined: S & ~OF)
      return true
    }
    add("nop") { g in
      g.emit(plain(size: g.rng.pick([2, 4]), [0x90]))
      return true
    }
    add("pause") { g in
      g.emit(plain([0xF3], size: 4, [0x90]))
      return true
    }
    for s in [2, 4] {
      add("nop r/m\(bits(s)) (0f 1f)") { g in
        var m = MemOperand()
        m.base = g.pickSrc()
        m.index = g.rng.chance(50) ? 5 : nil
        m.disp = Int64(g.rng.below(256) - 128)
        let rm: RMOperand = g.rng.chance(70) ? .mem(m) : .reg(g.pickSrc())
        g.emit(Asm.encode(size: s, opcode: [0x0F, 0x1F], reg: 0, rm: rm))
        return true
      }
    }
  }

  // MARK: Stack

  func stack() {
    for s in [2, 8] {
      let b = bits(s)
      add("push r\(b)") { g in
        guard g.push(s) else { return false }
        g.emit(Asm.encodeOpReg(size: s, noW: true, opcode: [0x50], reg: g.pickSrc()))
        return true
      }
      add("pop r\(b)") { g in
        guard g.pop(s) else { return false }
        let r = g.pickDest()
        g.emit(Asm.encodeOpReg(size: s, noW: true, opcode: [0x58], reg: r))
        g.written(r)
        return true
      }
      add("push m\(b)") { g in
        let m = g.memOperand(size: s)
        guard g.push(s) else { return false }
        g.emit(Asm.encode(size: s, noW: true, opcode: [0xFF], reg: 6, rm: .mem(m)))
        return true
      }
      add("pop m\(b)") { g in
        guard g.pop(s) else { return false }
        let m = g.memOperand(size: s)
        g.emit(Asm.encode(size: s, noW: true, opcode: [0x8F], reg: 0, rm: .mem(m)))
        return true
      }
      add("push imm\(s == 2 ? "16" : "32")") { g in
        guard g.push(s) else { return false }
        g.emit(plain(size: s, noW: true, [0x68], imm: Asm.imm(g.value(), s == 2 ? 2 : 4)))
        return true
      }
      add("pushf\(s == 2 ? "" : "q")") { g in
        g.needFlags(S)
        guard g.push(s) else { return false }
        g.emit(plain(size: s, noW: true, [0x9C]))
        return true
      }
      add("popf\(s == 2 ? "" : "q")") { g in
        guard g.push(s), g.pop(s) else { return false }
        // Only the status flags and DF change; IF stays set, TF/AC/NT clear.
        var v = (g.rng.next() & 0xCD5) | 0x202
        if g.rng.chance(20) { v |= 0x28 }
        g.emitHelper(plain(size: s, noW: true, [0x68], imm: Asm.imm(v, s == 2 ? 2 : 4)))
        g.emit(plain(size: s, noW: true, [0x9D]))
        g.flags(defined: S)
        return true
      }
    }
    // push/pop with an RSP-based operand: push computes the address before
    // decrementing RSP, pop after incrementing it.
    add("push m64 [rsp+d]") { g in
      guard g.rspKnown else { return false }
      let d = g.rng.below(16) * 8
      guard g.push(8) else { return false }
      g.emit(Encoded(bytes: [0xFF, 0x74, 0x24, UInt8(d)], ripFixup: nil))
      return true
    }
    add("pop m64 [rsp+d]") { g in
      guard g.rspKnown else { return false }
      let d = g.rng.below(16) * 8
      guard g.push(8), g.pop(8) else { return false }
      g.emitHelper(plain(size: 4, [0x6A], imm: Asm.imm(g.value(), 1)))
      g.emit(Encoded(bytes: [0x8F, 0x44, 0x24, UInt8(d)], ripFixup: nil))
      return true
    }
    add("push imm8") { g in
      guard g.push(8) else { return false }
      g.emit(plain(size: 4, [0x6A], imm: Asm.imm(g.value(), 1)))
      return true
    }
    add("leave") { g in
      guard
        let bp = g.knownValue(
          5, or: { g.rsp0 &+ UInt64(bitPattern: Int64(g.rng.below(33) - 16) * 8) })
      else { return false }
      guard bp >= Layout.stack + 0x100, bp <= Layout.stack + Layout.stackSize - 0x100 else {
        return false
      }
      g.stackLo = min(g.stackLo, -200)
      g.stackHi = max(g.stackHi, 200)
      guard g.push(8), g.pop(16) else { return false }
      g.emit(plain(size: 4, [0xC9]))
      g.written(5)
      return true
    }
    add("enter imm16,2..4 (nested frames)") { g in
      guard
        let bp = g.knownValue(
          5, or: { g.rsp0 &+ UInt64(bitPattern: Int64(g.rng.below(33) - 16) * 8) })
      else { return false }
      guard bp >= Layout.stack + 0x100, bp <= Layout.stack + Layout.stackSize - 0x100 else {
        return false
      }
      let level = 2 + g.rng.below(3)
      let size = g.rng.below(8) * 8
      guard g.push(8 * (level + 1) + size) else { return false }
      g.emit(plain(size: 4, [0xC8], imm: Asm.imm(UInt64(size), 2) + [UInt8(level)]))
      g.written(5)
      return true
    }
    add("enter imm16,0/1") { g in
      let level = g.rng.below(2)
      let size = g.rng.below(8) * 8
      guard g.push(8 + size + level * 8) else { return false }
      g.emit(plain(size: 4, [0xC8], imm: Asm.imm(UInt64(size), 2) + [UInt8(level)]))
      g.written(5)
      return true
    }
    add("call rel32") { g in
      guard g.push(8) else { return false }
      g.emitJump(
        Encoded(bytes: [0xE8, 0, 0, 0, 0], ripFixup: nil), relOffset: 1, width: 4,
        skip: g.rng.below(2))
      return true
    }
    add("ret / ret imm16") { g in
      let extra = g.rng.chance(40) ? g.rng.below(4) * 8 : -1
      guard g.push(8), g.pop(8 + max(extra, 0)) else { return false }
      // push imm32 <address of a later instruction>; ret
      g.emitJump(
        Encoded(bytes: [0x68, 0, 0, 0, 0], ripFixup: nil), relOffset: 1, width: -4,
        skip: 1 + g.rng.below(2))
      g.items[g.items.count - 1].form = -1
      g.emit(
        // `rep ret` (F3 C3), as GCC emits for some AMD cores: F3 is ignored.
        extra < 0
          ? plain(g.rng.chance(30) ? [0xF3] : [], size: 4, [0xC3])
          : plain(size: 4, [0xC2], imm: Asm.imm(UInt64(extra), 2)))
      return true
    }
  }

  // MARK: String instructions

  func strings() {
    struct Op {
      var name: String
      var op: UInt8
      var src: Bool
      var dst: Bool
      var reps: [(String, UInt8?)]
      var flags: Bool
    }
    let ops = [
      Op(
        name: "movs", op: 0xA4, src: true, dst: true, reps: [("", nil), ("rep ", 0xF3)],
        flags: false),
      Op(
        name: "stos", op: 0xAA, src: false, dst: true, reps: [("", nil), ("rep ", 0xF3)],
        flags: false),
      Op(
        name: "lods", op: 0xAC, src: true, dst: false, reps: [("", nil), ("rep ", 0xF3)],
        flags: false),
      Op(
        name: "cmps", op: 0xA6, src: true, dst: true,
        reps: [("", nil), ("repe ", 0xF3), ("repne ", 0xF2)], flags: true),
      Op(
        name: "scas", op: 0xAE, src: false, dst: true,
        reps: [("", nil), ("repe ", 0xF3), ("repne ", 0xF2)], flags: true),
    ]
    let suffix = [1: "b", 2: "w", 4: "d", 8: "q"]
    for o in ops {
      for (rn, rp) in o.reps {
        for s in allSizes {
          for a32 in [false, true] {
            add("\(rn)\(o.name)\(suffix[s]!)\(a32 ? " (a32)" : "")") { g in
              // With 0x67 only ECX/ESI/EDI count: give the upper halves junk. Vendor
              // difference: with a count of 0, Intel still zeroes bits 63:32 of RCX, RSI
              // and RDI, AMD (and the interpreter) leave them; keep them zero then, so
              // both behaviours agree (docs/DIFFTEST.md).
              var count: UInt64 = 1
              var junk: () -> UInt64 = { a32 ? g.rng.next() << 32 : 0 }
              let low: (UInt64) -> UInt64 = { a32 ? $0 & 0xFFFF_FFFF : $0 }
              if rp != nil {
                guard
                  let c = g.knownValue(
                    1,
                    or: {
                      let n = g.rng.chance(15) ? 0 : UInt64(g.rng.below(9))
                      return (n == 0 ? 0 : junk()) | n
                    })
                else { return false }
                guard low(c) <= 16 else { return false }
                count = low(c)
                if count == 0 {
                  guard c >> 32 == 0 else { return false }
                  junk = { 0 }
                }
              }
              func pointer(_ r: Int) -> Bool {
                guard
                  let raw = g.knownValue(
                    r,
                    or: {
                      junk()
                        | (Layout.data + 0x100 + UInt64(g.rng.below(0x3000)) / UInt64(s) * UInt64(s))
                    })
                else { return false }
                let v = low(raw)
                if count == 0 && raw >> 32 != 0 { return false }
                guard v >= Layout.data + 0x100, v <= Layout.data + Layout.dataSize - 0x100 else {
                  return false
                }
                if count > 0 {
                  for k in 0..<min(Int(count), 3) {
                    g.maybePatch(v &+ UInt64(k * s), size: s)
                  }
                }
                return true
              }
              // Overlapping source and destination now and then (memmove-style).
              if o.src && o.dst && g.known[6] && g.known[7] && g.assigned[6] == nil
                && g.assigned[7] == nil && g.rng.chance(25)
              {
                let base = junk() | (Layout.data + 0x200 + UInt64(g.rng.below(0x1000)))
                g.assigned[6] = base
                g.assigned[7] = base &+ UInt64(bitPattern: Int64(g.rng.below(33) - 16))
              }
              if o.src && !pointer(6) { return false }
              if o.dst && !pointer(7) { return false }
              var pre: [UInt8] = []
              if let p = rp { pre.append(p) }
              if a32 { pre.append(0x67) }
              if o.src && g.rng.chance(10) { pre.append(g.rng.pick([0x26, 0x2E, 0x36, 0x3E])) }
              g.emit(plain(pre, size: s, [s == 1 ? o.op : o.op + 1]))
              if o.src { g.written(6) }
              if o.dst { g.written(7) }
              if rp != nil { g.written(1) }
              if o.name == "lods" { g.written(0) }
              if o.flags && count > 0 { g.flags(defined: S) }
              return true
            }
          }
        }
      }
    }
  }

  // MARK: Deliberate exceptions

  func faults() {
    add("fault: ud2") { g in
      g.emit(plain(size: 4, [0x0F, 0x0B]))
      return true
    }
    add("fault: int3") { g in
      g.emit(plain(size: 4, [0xCC]))
      return true
    }
    add("fault: #PF past data end") { g in
      let s = g.rng.pick([1, 2, 4, 8])
      let t = Layout.data + Layout.dataSize - UInt64(g.rng.below(s)) + UInt64(g.rng.below(2) * 64)
      let m = g.memOperand(size: s, target: t, patch: false)
      let r = g.pickDest()
      if g.rng.chance(50) {
        g.emit(
          Asm.encode(
            size: s, opcode: [s == 1 ? 0x8A : 0x8B], reg: r, regIsByte: s == 1, rm: .mem(m)))
      } else {
        g.emit(
          Asm.encode(
            size: s, opcode: [s == 1 ? 0x88 : 0x89], reg: r, regIsByte: s == 1, rm: .mem(m)))
      }
      g.written(r)
      return true
    }
    add("fault: read-modify-write straddling the data region's end") { g in
      let s = g.rng.pick([2, 4, 8])
      let t = Layout.data + Layout.dataSize - UInt64(1 + g.rng.below(s - 1))
      let m = g.memOperand(size: s, target: t, patch: false)
      let r = g.pickSrc()
      let op: [UInt8] = g.rng.pick([
        [0x01], [0x09], [0x11], [0x21], [0x29], [0x31], [0x87], [0x0F, 0xC1],
      ])
      let lock: [UInt8] = op != [0x87] && g.rng.chance(30) ? [0xF0] : []
      g.emit(Asm.encode(prefixes: lock, size: s, opcode: op, reg: r, rm: .mem(m)))
      return true
    }
    add("fault: #GP non-canonical") { g in
      let b = g.pickDest()
      guard g.known[b], g.assigned[b] == nil else { return false }
      g.assigned[b] = 0x8000_0000_0000_0000 | g.rng.next() >> 20
      var m = MemOperand()
      m.base = b
      m.disp = Int64(g.rng.below(64))
      g.emit(Asm.encode(size: 8, opcode: [0x8B], reg: g.pickDest(), rm: .mem(m)))
      return true
    }
    // Opcodes that are invalid in 64-bit mode, and LOCK where it is not allowed.
    let invalid64: [[UInt8]] = [
      [0x06], [0x07], [0x0E], [0x16], [0x17], [0x1E], [0x1F], [0x27], [0x2F], [0x37], [0x3F],
      [0x60], [0x61], [0x82, 0xC0, 0x01], [0x9A, 0, 0, 0, 0, 0, 0], [0xCE], [0xD4, 0x0A],
      [0xD5, 0x0A], [0xD6], [0xEA, 0, 0, 0, 0, 0, 0],
    ]
    add("fault: opcode invalid in 64-bit mode") { g in
      g.emit(Encoded(bytes: g.rng.pick(invalid64), ripFixup: nil))
      return true
    }
    add("fault: lock on a non-lockable form") { g in
      let forms: [[UInt8]] = [
        [0xF0, 0x48, 0x89, 0xC3], [0xF0, 0x01, 0xD8], [0xF0, 0x90], [0xF0, 0x0F, 0xAF, 0xC1],
        [0xF0, 0x48, 0x8B, 0x05, 0, 0, 0, 0], [0xF0, 0x84, 0x05, 0, 0, 0, 0],
      ]
      g.emit(Encoded(bytes: g.rng.pick(forms), ripFixup: nil))
      return true
    }
    add("fault: ud0/ud1") { g in
      g.emit(Encoded(bytes: g.rng.pick([[0x0F, 0xB9, 0xC0], [0x0F, 0xFF, 0xC0]]), ripFixup: nil))
      return true
    }
    add("fault: instruction longer than 15 bytes") { g in
      let n = 12 + g.rng.below(4)
      let pre = (0..<n).map { _ in g.rng.pick([0x2E, 0x3E, 0x26, 0x36, 0x66] as [UInt8]) }
      g.emit(Encoded(bytes: pre + [0x48, 0x8B, 0xC0], ripFixup: nil))
      return true
    }
    for (n, op) in [("rep stos", UInt8(0xAA)), ("rep movs", 0xA4)] {
      add("fault: \(n) running off the data region") { g in
        let s = g.rng.pick(allSizes)
        let k = UInt64(g.rng.below(4))
        let end = Layout.data + Layout.dataSize
        guard g.knownValue(7, or: { end - k * UInt64(s) }) == end - k * UInt64(s),
          let count = g.knownValue(1, or: { k + 1 + UInt64(g.rng.below(4)) }), count <= 16
        else { return false }
        if op == 0xA4 {
          guard g.knownValue(6, or: { Layout.data + 0x200 }) == Layout.data + 0x200 else {
            return false
          }
        }
        g.emit(plain([0xF3], size: s, [s == 1 ? op : op + 1]))
        g.written(1)
        g.written(6)
        g.written(7)
        return true
      }
    }
    add("fault: cmpxchg16b misaligned") { g in
      let t = g.dataTarget(size: 24) + 8 - UInt64(g.rng.below(2) * 4)
      let m = g.memOperand(size: 16, target: t & ~15 | 8, patch: false)
      g.emit(Asm.encode(size: 8, opcode: [0x0F, 0xC7], reg: 1, rm: .mem(m)))
      g.written(0)
      g.written(2)
      g.flags(defined: ZF)
      return true
    }
  }
}
