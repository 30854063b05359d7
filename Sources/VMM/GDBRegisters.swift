import X86

/// The x86-64 register file gdb sees: its target description (XML) and the byte layout
/// of `g`/`p` replies, both generated from one table so they cannot disagree.
enum GDBRegisters {
  enum Source {
    case gpr(Int)  // encoding number, 0 = RAX
    case rip, rflags
    case selector(Int)  // ES CS SS DS FS GS order as in CPUState below
    case fx(offset: Int, size: Int)  // bytes of the FXSAVE image
    case fxTag  // FXSAVE's abridged tag, widened to the x87 tag word
    case fsBase, gsBase
    case cr0, cr2, cr3, cr4, cr8, efer
  }

  struct Register {
    let name: String
    let bits: Int
    let type: String
    let source: Source
    var bytes: Int { bits / 8 }
  }

  struct Feature {
    let name: String
    let types: String
    let registers: [Register]
  }

  static let features: [Feature] = {
    func r(_ n: String, _ b: Int, _ t: String, _ s: Source) -> Register {
      Register(name: n, bits: b, type: t, source: s)
    }
    // gdb's amd64 order (rax rbx rcx rdx rsi rdi rbp rsp), not the encoding order.
    let gprNames: [(String, Int)] = [
      ("rax", 0), ("rbx", 3), ("rcx", 1), ("rdx", 2), ("rsi", 6), ("rdi", 7), ("rbp", 5),
      ("rsp", 4),
    ]
    var core = gprNames.map {
      r($0.0, 64, $0.0 == "rsp" || $0.0 == "rbp" ? "data_ptr" : "int64", .gpr($0.1))
    }
    core += (8..<16).map { r("r\($0)", 64, "int64", .gpr($0)) }
    core.append(r("rip", 64, "code_ptr", .rip))
    core.append(r("eflags", 32, "int32", .rflags))
    for (i, n) in ["cs", "ss", "ds", "es", "fs", "gs"].enumerated() {
      core.append(r(n, 32, "int32", .selector(i)))
    }
    core += (0..<8).map { r("st\($0)", 80, "i387_ext", .fx(offset: 32 + 16 * $0, size: 10)) }
    core += [
      r("fctrl", 32, "int", .fx(offset: 0, size: 2)),
      r("fstat", 32, "int", .fx(offset: 2, size: 2)),
      r("ftag", 32, "int", .fxTag), r("fiseg", 32, "int", .fx(offset: 12, size: 2)),
      r("fioff", 32, "int", .fx(offset: 8, size: 4)),
      r("foseg", 32, "int", .fx(offset: 20, size: 2)),
      r("fooff", 32, "int", .fx(offset: 16, size: 4)), r("fop", 32, "int", .fx(offset: 6, size: 2)),
    ]
    var sse = (0..<16).map { r("xmm\($0)", 128, "vec128", .fx(offset: 160 + 16 * $0, size: 16)) }
    sse.append(r("mxcsr", 32, "int", .fx(offset: 24, size: 4)))
    let vec128 = """
      <vector id="v8bf16" type="bfloat16" count="8"/><vector id="v4f" type="ieee_single" count="4"/>
      <vector id="v2d" type="ieee_double" count="2"/><vector id="v16i8" type="int8" count="16"/>
      <vector id="v8i16" type="int16" count="8"/><vector id="v4i32" type="int32" count="4"/>
      <vector id="v2i64" type="int64" count="2"/>
      <union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/></union>
      """
    return [
      Feature(name: "org.gnu.gdb.i386.core", types: "", registers: core),
      Feature(name: "org.gnu.gdb.i386.sse", types: vec128, registers: sse),
      Feature(
        name: "org.gnu.gdb.i386.segments", types: "",
        registers: [r("fs_base", 64, "int", .fsBase), r("gs_base", 64, "int", .gsBase)]),
      // Control registers and EFER: our own feature; gdb shows them as plain registers.
      Feature(
        name: "org.swiftvmm.x86.system", types: "",
        registers: [
          r("cr0", 64, "int", .cr0), r("cr2", 64, "int", .cr2), r("cr3", 64, "int", .cr3),
          r("cr4", 64, "int", .cr4), r("cr8", 64, "int", .cr8), r("efer", 64, "int", .efer),
        ]),
    ]
  }()

  static let all: [Register] = features.flatMap(\.registers)

  static let targetXML: String = {
    var x =
      "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n"
    x += "<architecture>i386:x86-64</architecture>\n"
    var n = 0
    for f in features {
      x += "<feature name=\"\(f.name)\">\n\(f.types)"
      for reg in f.registers {
        x +=
          "<reg name=\"\(reg.name)\" bitsize=\"\(reg.bits)\" type=\"\(reg.type)\" regnum=\"\(n)\"/>\n"
        n += 1
      }
      x += "</feature>\n"
    }
    return x + "</target>\n"
  }()

  /// The register's bytes (little-endian), or nil when the engine does not expose it
  /// (gdb then shows `<unavailable>`).
  static func value(_ reg: Register, _ file: GDBRegisterFile) -> [UInt8]? {
    let s = file.state
    func le(_ v: UInt64) -> [UInt8] {
      (0..<reg.bytes).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) }
    }
    let segs = [s.special.cs, s.special.ss, s.special.ds, s.special.es, s.special.fs, s.special.gs]
    switch reg.source {
    case .gpr(let i): return le(s.general[i])
    case .rip: return le(s.general.rip)
    case .rflags: return le(s.general.rflags)
    case .selector(let i): return le(UInt64(segs[i].selector))
    case .fsBase: return le(s.special.fs.base)
    case .gsBase: return le(s.special.gs.base)
    case .cr0: return le(s.special.cr0)
    case .cr2: return le(s.special.cr2)
    case .cr3: return le(s.special.cr3)
    case .cr4: return le(s.special.cr4)
    case .cr8: return le(s.special.cr8)
    case .efer: return le(s.special.efer)
    case .fx(let off, let size):
      guard let fx = file.fx, fx.count >= off + size else { return nil }
      return Array(fx[off..<off + size]) + [UInt8](repeating: 0, count: reg.bytes - size)
    case .fxTag:
      guard let fx = file.fx, fx.count > 4 else { return nil }
      // Abridged bit set: the register holds a value (tag 00); clear: empty (tag 11).
      var tag: UInt64 = 0
      for i in 0..<8 where fx[4] & (1 << i) == 0 { tag |= 3 << UInt64(2 * i) }
      return le(tag)
    }
  }

  /// Writes `bytes` into the register; false when the register cannot be written
  /// this way (selectors, control registers, x87/SSE state).
  static func set(_ reg: Register, _ bytes: [UInt8], in file: inout GDBRegisterFile) -> Bool {
    guard bytes.count == reg.bytes else { return false }
    var v: UInt64 = 0
    for (k, b) in bytes.prefix(8).enumerated() { v |= UInt64(b) << UInt64(8 * k) }
    switch reg.source {
    case .gpr(let i): file.state.general[i] = v
    case .rip: file.state.general.rip = v
    // Bit 1 always reads 1; the guest's own flags stay otherwise as written.
    case .rflags: file.state.general.rflags = v | 2
    case .fsBase: file.state.special.fs.base = v
    case .gsBase: file.state.special.gs.base = v
    default: return value(reg, file) == bytes  // unchanged: nothing to write
    }
    return true
  }
}

/// What gdb reads and writes: the CPU state and, where the engine has one, its
/// FXSAVE image (x87 and SSE).
struct GDBRegisterFile: Equatable {
  var state: CPUState
  var fx: [UInt8]?
}
