import CNativeExec

/// Flag bits the generator reasons about.
public enum Flag {
  public static let cf: UInt64 = 0x001
  public static let pf: UInt64 = 0x004
  public static let af: UInt64 = 0x010
  public static let zf: UInt64 = 0x040
  public static let sf: UInt64 = 0x080
  public static let df: UInt64 = 0x400
  public static let of: UInt64 = 0x800
  public static let status: UInt64 = 0x8D5

  public static func names(_ m: UInt64) -> String {
    var s: [String] = []
    for (b, n) in [
      (cf, "CF"), (pf, "PF"), (af, "AF"), (zf, "ZF"), (sf, "SF"), (df, "DF"), (of, "OF"),
    ] where m & b != 0 { s.append(n) }
    return s.isEmpty ? "-" : s.joined(separator: ",")
  }

  /// Flags read by condition code `cc` (0...15).
  static func readBy(cc: Int) -> UInt64 {
    switch cc >> 1 {
    case 0: return of
    case 1: return cf
    case 2: return zf
    case 3: return cf | zf
    case 4: return sf
    case 5: return pf
    case 6: return sf | of
    default: return zf | sf | of
    }
  }
}

/// splitmix64: small, fast and reproducible.
public struct SplitMix {
  public var state: UInt64
  public init(_ seed: UInt64) { state = seed }
  @inline(__always) public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  @inline(__always) public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
  @inline(__always) public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
  public mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
}

/// The memory layout shared by both runners.
public enum Layout {
  public static let code = UInt64(NX_CODE_BASE)
  public static let data = UInt64(NX_DATA_BASE)
  public static let dataSize = UInt64(NX_DATA_SIZE)
  public static let stack = UInt64(NX_STACK_BASE)
  public static let stackSize = UInt64(NX_STACK_SIZE)
  public static let maxCode = Int(NX_MAX_CODE)
  public static let maxPatches = Int(NX_MAX_PATCHES)
}

/// One generated instruction before layout.
struct Item {
  var enc: Encoded
  /// Index into the form table, or -1 for helper instructions.
  var form: Int
  /// For jumps: (offset of rel, width 1 or 4, target form instance).
  var jump: (relOffset: Int, width: Int, targetForm: Int)?
}

/// A generated test case: code, initial state, memory patches and the flags
/// that may legitimately differ at the end.
public struct TestCase {
  public var seed: UInt64
  public var index: Int
  public var regs: [UInt64]
  public var rflags: UInt64
  public var patches: [(address: UInt64, value: UInt64)]
  /// Initial x87/MMX/SSE state (FXSAVE image, FXState.swift).
  public var fx: [UInt8] = []
  /// FSW bits (x87 condition codes) that some form leaves undefined.
  public var fswUndefined: UInt16 = 0
  var items: [Item]
  /// Index of the first item of each form instance.
  var formStarts: [Int]
  /// Form index of each form instance.
  public var forms: [Int]
  /// Undefined-flag set after each form instance, and of pending jumps.
  var uAfter: [UInt64]
  var jumps: [(from: Int, target: Int, u: UInt64)]
  var uAtStart: [UInt64]

  /// Lays out the first `formCount` form instances (all when nil).
  public func code(formCount: Int? = nil) -> [UInt8] {
    let n = formCount ?? forms.count
    let itemEnd = n < formStarts.count ? formStarts[n] : items.count
    var offsets: [Int] = []
    var pc = 0
    for i in 0..<itemEnd {
      offsets.append(pc)
      pc += items[i].enc.bytes.count
    }
    let end = pc
    var out: [UInt8] = []
    out.reserveCapacity(end)
    for i in 0..<itemEnd {
      var b = items[i].enc.bytes
      let next = offsets[i] + b.count
      if let f = items[i].enc.ripFixup {
        let d = Int64(bitPattern: f.target &- (Layout.code &+ UInt64(next)))
        let v = UInt32(truncatingIfNeeded: d)
        for k in 0..<4 { b[f.offset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
      }
      if let j = items[i].jump {
        let target = j.targetForm < n ? offsets[formStarts[j.targetForm]] : end
        let rel = target - next
        if j.width == 1 {
          precondition(rel >= -128 && rel <= 127, "rel8 jump out of range")
          b[j.relOffset] = UInt8(truncatingIfNeeded: rel)
        } else if j.width == -4 {
          let v = UInt32(truncatingIfNeeded: Layout.code &+ UInt64(target))
          for k in 0..<4 { b[j.relOffset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
        } else {
          let v = UInt32(truncatingIfNeeded: rel)
          for k in 0..<4 { b[j.relOffset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
        }
      }
      out += b
    }
    return out
  }

  /// Flags that may be undefined at the end of the first `formCount` forms.
  public func undefinedFlags(formCount: Int? = nil) -> UInt64 {
    let n = formCount ?? forms.count
    guard n > 0 else { return 0 }
    var u = uAfter[n - 1]
    for j in jumps where j.from < n && j.target >= n { u |= j.u }
    return u
  }

  /// Flags that may be undefined at any point of the first `formCount` forms
  /// (used when the case ends in an exception).
  public func undefinedFlagsAnywhere(formCount: Int? = nil) -> UInt64 {
    let n = formCount ?? forms.count
    var u = undefinedFlags(formCount: n)
    for i in 0..<min(n, uAtStart.count) { u |= uAtStart[i] }
    return u
  }

  public func nativeCase(formCount: Int? = nil) -> nx_case {
    var c = nx_case()
    let bytes = code(formCount: formCount)
    precondition(bytes.count <= Layout.maxCode)
    withUnsafeMutablePointer(to: &c.in.gpr) {
      $0.withMemoryRebound(to: UInt64.self, capacity: 16) { p in
        for i in 0..<16 { p[i] = regs[i] }
      }
    }
    c.in.rflags = rflags
    withUnsafeMutableBytes(of: &c.in.fx) { p in
      for k in 0..<min(p.count, fx.count) { p[k] = fx[k] }
    }
    c.code_len = UInt32(bytes.count)
    withUnsafeMutableBytes(of: &c.code) { p in
      for (i, b) in bytes.enumerated() { p[i] = b }
    }
    c.npatches = UInt32(patches.count)
    withUnsafeMutablePointer(to: &c.patches) {
      $0.withMemoryRebound(to: nx_patch.self, capacity: Layout.maxPatches) { p in
        for (i, pt) in patches.enumerated() {
          p[i] = nx_patch(address: pt.address, value: pt.value)
        }
      }
    }
    return c
  }
}

/// Builds one test case. Forms call its helpers to pick operands and emit.
public final class Gen {
  var rng: SplitMix
  /// Register still holds its initial value on every path.
  var known = [Bool](repeating: true, count: 16)
  /// Initial value chosen so far.
  var assigned = [UInt64?](repeating: nil, count: 16)
  var items: [Item] = []
  var formStarts: [Int] = []
  var forms: [Int] = []
  var u: UInt64 = 0
  var uAfter: [UInt64] = []
  var uAtStart: [UInt64] = []
  var pendingU: [Int: UInt64] = [:]
  var jumps: [(from: Int, target: Int, u: UInt64)] = []
  var patches: [(address: UInt64, value: UInt64)] = []
  var patched = Set<UInt64>()
  /// Possible RSP displacement range relative to its initial value.
  var stackLo = 0
  var stackHi = 0
  var rspKnown = true
  var currentForm = -1
  /// Bytes emitted so far (a bound; layout may be shorter).
  var codeBytes = 0
  let rsp0: UInt64

  init(seed: UInt64) {
    rng = SplitMix(seed)
    var sp = Layout.stack + 0x800 + UInt64(rng.below(64)) * 8 - 256
    if rng.chance(10) { sp &+= UInt64(rng.below(8)) }
    rsp0 = sp
    assigned[4] = sp
  }

  // MARK: Values

  static let edges: [UInt64] = [
    0, 1, 2, ~0, ~1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF,
    0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000,
    0xFFFF_FFFF_0000_0000, 0xFFFF_FFFF_FFFF_FF80, 0xFFFF_FFFF_FFFF_8000, 0xFFFF_FFFF_8000_0000,
  ]

  /// An interesting 64-bit value: edges, sign boundaries at every size, random.
  func value() -> UInt64 {
    switch rng.below(10) {
    case 0, 1: return rng.pick(Gen.edges)
    case 2: return UInt64(bitPattern: Int64(rng.below(9) - 4))
    case 3:
      let low = rng.pick(Gen.edges)
      let bits = rng.pick([8, 16, 32] as [UInt64])
      let mask: UInt64 = (1 << bits) - 1
      return (rng.next() & ~mask) | (low & mask)
    case 4: return 1 << UInt64(rng.below(64))
    case 5: return rng.next() & 0xFF
    case 6: return rng.next() & 0xFFFF_FFFF
    default: return rng.next()
    }
  }

  // MARK: Registers

  /// A register that may be written (never RSP).
  func pickDest(exclude: Set<Int> = []) -> Int {
    while true {
      let r = rng.below(16)
      if r != 4 && !exclude.contains(r) { return r }
    }
  }

  /// Any register as a source.
  func pickSrc() -> Int { rng.below(16) }

  func written(_ r: Int) { if r < 16 { known[r] = false } }
  func writtenByte(_ r: Int) { written(r >= 16 ? r - 16 : r) }

  /// Initial value of a register that still holds it, assigning one if needed.
  func knownValue(_ r: Int, or make: () -> UInt64) -> UInt64? {
    guard known[r] else { return nil }
    if let v = assigned[r] { return v }
    let v = make()
    assigned[r] = v
    return v
  }

  /// A byte register: legacy numbering (AL..BL, AH..BH) or REX numbering (AL..R15B).
  /// A destination is never SPL.
  func byteReg(legacy: Bool, dest: Bool) -> Int {
    if legacy { return rng.pick([0, 1, 2, 3, 16, 17, 18, 19]) }
    while true {
      let r = rng.below(16)
      if !(dest && r == 4) { return r }
    }
  }

  /// Whether a memory operand needs a REX prefix (so AH..BH are unusable).
  static func needsRex(_ rm: RMOperand) -> Bool {
    if case .mem(let m) = rm { return (m.base ?? 0) >= 8 || (m.index ?? 0) >= 8 }
    return false
  }

  // MARK: Memory operands

  /// A data-region address for an access of `size` bytes.
  func dataTarget(size: Int, align: Int = 1) -> UInt64 {
    var off: UInt64
    if size > 1 && rng.chance(6) {
      // Straddle a page boundary inside the region.
      let page = UInt64(1 + rng.below(Int(Layout.dataSize >> 12) - 1)) << 12
      return Layout.data + page - UInt64(1 + rng.below(size - 1))
    }
    if rng.chance(75) {
      off = UInt64(rng.below(4096))
    } else {
      off = UInt64(rng.below(Int(Layout.dataSize)))
    }
    var a = align
    if a == 1 && rng.chance(40) { a = size }
    off = off / UInt64(a) * UInt64(a)
    if off + UInt64(size) > Layout.dataSize {
      off = (Layout.dataSize - UInt64(size)) / UInt64(a) * UInt64(a)
    }
    return Layout.data + off
  }

  func maybePatch(_ addr: UInt64, size: Int) {
    guard patches.count < Layout.maxPatches, rng.chance(70) else { return }
    let a = addr & ~7
    guard !patched.contains(a) else { return }
    guard a >= Layout.data, a + 8 <= Layout.data + Layout.dataSize else { return }
    patched.insert(a)
    patches.append((a, value()))
    if size > 8 && a + 16 <= Layout.data + Layout.dataSize && !patched.contains(a + 8)
      && patches.count < Layout.maxPatches
    {
      patched.insert(a + 8)
      patches.append((a + 8, value()))
    }
  }

  /// A memory operand addressing `target` (or a fresh data target).
  /// Registers it uses must still hold their initial values.
  func memOperand(size: Int, align: Int = 1, target t: UInt64? = nil, patch: Bool = true)
    -> MemOperand
  {
    let target = t ?? dataTarget(size: size, align: align)
    if patch { maybePatch(target, size: size) }
    var m = MemOperand()
    m.target = target
    let mode = rng.below(12)
    func fits32(_ d: Int64) -> Bool { d >= Int64(Int32.min) && d <= Int64(Int32.max) }
    func smallDisp() -> Int64 {
      switch rng.below(4) {
      case 0: return 0
      case 1: return Int64(rng.below(256) - 128)
      case 2: return Int64(rng.below(1 << 20)) - (1 << 19)
      default: return Int64(bitPattern: rng.next() >> 33) - (1 << 30)
      }
    }
    func baseReg() -> Int? {
      for _ in 0..<8 {
        let r = rng.below(16)
        if r != 4 && known[r] { return r }
      }
      return nil
    }
    switch mode {
    case 0:
      m.disp = Int64(target)
      return m
    case 1, 2:
      m.ripRelative = true
      return m
    case 3, 4, 5:
      // [base + disp]
      guard let b = baseReg() else { break }
      let d = smallDisp()
      guard let v = knownValue(b, or: { target &- UInt64(bitPattern: d) }) else { break }
      let disp = Int64(bitPattern: target &- v)
      guard fits32(disp) else { break }
      m.base = b
      m.disp = disp
      m.wideDisp = rng.chance(20)
      return m
    case 6, 7, 8:
      // [base + index*scale + disp]
      guard let b = baseReg(), let i = baseReg(), i != 4 else { break }
      let s = rng.pick([1, 2, 4, 8])
      guard let iv = knownValue(i, or: { UInt64(bitPattern: Int64(rng.below(129) - 64)) }) else {
        break
      }
      let d = smallDisp()
      guard
        let bv = knownValue(b, or: { target &- iv &* UInt64(s) &- UInt64(bitPattern: d) })
      else { break }
      let ea0 = bv &+ (b == i ? bv : iv) &* UInt64(s)
      let disp = Int64(bitPattern: target &- ea0)
      guard fits32(disp) else { break }
      m.base = b
      m.index = i
      m.scale = s
      m.disp = disp
      return m
    case 9:
      // [index*scale + disp32]
      guard let i = baseReg() else { break }
      let s = rng.pick([1, 2, 4, 8])
      guard let iv = knownValue(i, or: { UInt64(rng.below(256)) }) else { break }
      let disp = Int64(bitPattern: target &- iv &* UInt64(s))
      guard fits32(disp) else { break }
      m.index = i
      m.scale = s
      m.disp = disp
      return m
    case 10:
      // 0x67: [base32 + disp], upper half of base ignored.
      guard let b = baseReg() else { break }
      let d = Int64(rng.below(256) - 128)
      guard
        let v = knownValue(
          b, or: { (rng.next() << 32) | ((target &- UInt64(bitPattern: d)) & 0xFFFF_FFFF) })
      else { break }
      let disp = Int64(Int32(truncatingIfNeeded: (target &- v) & 0xFFFF_FFFF))
      m.base = b
      m.disp = disp
      m.addr32 = true
      return m
    default:
      // [rsp + disp8] into the stack page, while RSP is still known.
      guard rspKnown, t == nil else { break }
      let d = Int64(rng.below(128))
      let a = rsp0 &+ UInt64(d)
      guard a + UInt64(size) <= Layout.stack + Layout.stackSize else { break }
      m.base = 4
      m.disp = d
      m.target = a
      return m
    }
    m.disp = Int64(target)
    m.base = nil
    m.index = nil
    return m
  }

  /// Either a register (0...15 or byte numbering) or a data memory operand.
  func rmOperand(size: Int, write: Bool, memPercent: Int = 40) -> RMOperand {
    if rng.chance(memPercent) { return .mem(memOperand(size: size)) }
    let r = write ? pickDest() : pickSrc()
    return .reg(r)
  }

  // MARK: Flags

  /// Makes sure `mask` holds defined values before an instruction reads them:
  /// emits `cmp r, r` (which defines all six status flags) when needed.
  func needFlags(_ mask: UInt64) {
    guard u & mask != 0 else { return }
    let a = pickSrc()
    let b = pickSrc()
    emitHelper(Asm.encode(size: 8, opcode: [0x39], reg: a, rm: .reg(b)))
    u &= ~Flag.status
  }

  /// The instruction defines `defined` and leaves `undefined` undefined.
  func flags(defined: UInt64, undefined: UInt64 = 0) {
    u = (u & ~defined) | undefined
  }

  // MARK: Emission

  func emit(_ e: Encoded) {
    items.append(Item(enc: e, form: currentForm, jump: nil))
    codeBytes += e.bytes.count
  }

  func emitHelper(_ e: Encoded) {
    items.append(Item(enc: e, form: -1, jump: nil))
    codeBytes += e.bytes.count
  }

  /// A forward jump over the next `skip` form instances.
  func emitJump(_ e: Encoded, relOffset: Int, width: Int, skip: Int) {
    let target = forms.count + skip  // forms.count is the index of the next instance
    items.append(
      Item(
        enc: e, form: currentForm, jump: (relOffset: relOffset, width: width, targetForm: target)))
    codeBytes += e.bytes.count
    jumps.append((forms.count - 1, target, u))
    pendingU[target, default: 0] |= u
  }

  func push(_ bytes: Int) -> Bool {
    guard stackLo - bytes >= -1024 else { return false }
    stackLo -= bytes
    rspKnown = false
    known[4] = false
    return true
  }

  func pop(_ bytes: Int) -> Bool {
    guard stackHi + bytes <= 1024 else { return false }
    stackHi += bytes
    rspKnown = false
    known[4] = false
    return true
  }

  // MARK: Building a case

  static func build(seed: UInt64, index: Int, table: FormTable, enabled: [Int]) -> TestCase {
    let g = Gen(seed: seed)
    let count = 1 + g.rng.below(7)
    var attempts = 0
    while g.forms.count < count && attempts < 100 {
      attempts += 1
      let f = enabled[g.rng.below(enabled.count)]
      let instance = g.forms.count
      let snapshot = g.save()
      g.u |= g.pendingU[instance] ?? 0
      g.uAtStart.append(g.u)
      g.formStarts.append(g.items.count)
      g.forms.append(f)
      g.currentForm = f
      if table.forms[f].gen(g) && g.codeBytes <= Layout.maxCode - 20 {
        g.uAfter.append(g.u)
      } else {
        g.restore(snapshot)
      }
    }
    // Remaining registers get interesting values.
    var regs = [UInt64](repeating: 0, count: 16)
    for r in 0..<16 { regs[r] = g.assigned[r] ?? g.value() }
    regs[4] = g.rsp0
    let fl = (g.assignedFlags ?? (g.rng.next() & Flag.status)) | (g.rng.chance(15) ? Flag.df : 0)
    var tc = TestCase(
      seed: seed, index: index, regs: regs, rflags: fl | 2, patches: g.patches, items: g.items,
      formStarts: g.formStarts, forms: g.forms, uAfter: g.uAfter, jumps: g.jumps,
      uAtStart: g.uAtStart)
    tc.fx = FX.initialImage(seed: seed)
    tc.fswUndefined = g.fswUndefined
    return tc
  }

  /// FSW bits left undefined by an x87 form of this case (FormsSSE.swift).
  var fswUndefined: UInt16 = 0

  var assignedFlags: UInt64? = nil

  struct Snapshot {
    var known: [Bool]
    var assigned: [UInt64?]
    var items: Int
    var formStarts: Int
    var forms: Int
    var u: UInt64
    var uAtStart: Int
    var pendingU: [Int: UInt64]
    var jumps: Int
    var patches: [(address: UInt64, value: UInt64)]
    var patched: Set<UInt64>
    var stackLo: Int
    var stackHi: Int
    var rspKnown: Bool
    var codeBytes: Int
  }

  func save() -> Snapshot {
    Snapshot(
      known: known, assigned: assigned, items: items.count, formStarts: formStarts.count,
      forms: forms.count, u: u, uAtStart: uAtStart.count, pendingU: pendingU, jumps: jumps.count,
      patches: patches, patched: patched, stackLo: stackLo, stackHi: stackHi, rspKnown: rspKnown,
      codeBytes: codeBytes)
  }

  func restore(_ s: Snapshot) {
    known = s.known
    assigned = s.assigned
    items.removeLast(items.count - s.items)
    formStarts.removeLast(formStarts.count - s.formStarts)
    forms.removeLast(forms.count - s.forms)
    u = s.u
    uAtStart.removeLast(uAtStart.count - s.uAtStart)
    pendingU = s.pendingU
    jumps.removeLast(jumps.count - s.jumps)
    patches = s.patches
    patched = s.patched
    stackLo = s.stackLo
    stackHi = s.stackHi
    rspKnown = s.rspKnown
    codeBytes = s.codeBytes
  }
}
