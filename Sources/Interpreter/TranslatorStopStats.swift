import X86

// What the translator leaves to the interpreter, by instruction: every time the
// interpreter runs an instruction because a block would start with it and it is not
// translated, its class is counted (a fixed table, so counting costs one increment), and
// `--stats` shows the most frequent ones. This is what decides which form to translate
// next.
//
// A class is the opcode (one byte, or 0F and a second byte), the ModRM.reg digit for
// opcodes whose ModRM.reg selects the operation (F7 /6 is DIV, FF /2 an indirect CALL),
// and whether a REP, REPNE or LOCK prefix came with it.

/// Counts of untranslatable instructions by class, owned by a BlockTranslator.
struct StopCounts {
  /// Prefix (2 bits) | opcode index (0-255 one byte, 256-511 0F xx; 9 bits) | digit (3 bits).
  static let classes = 1 << 14
  /// A class for instructions that could not be decoded at all (a fault while decoding).
  static let undecodable = UInt16(classes)
  /// Entries in `--stats`.
  static let shown = 15

  let counts: UnsafeMutablePointer<UInt64>

  init() {
    counts = .allocate(capacity: Self.classes + 1)
    counts.initialize(repeating: 0, count: Self.classes + 1)
  }

  func deallocate() { counts.deallocate() }

  /// The one-byte opcodes, and the 0F xx ones (index 256 + xx), whose ModRM.reg is an
  /// opcode extension.
  static func hasDigit(_ op: Int) -> Bool {
    switch op {
    case 0x80...0x83, 0x8F, 0xC0, 0xC1, 0xC6, 0xC7, 0xD0...0xD3, 0xD8...0xDF, 0xF6, 0xF7,
      0xFE, 0xFF:
      return true
    case 0x100, 0x101, 0x118, 0x171...0x173, 0x1AE, 0x1B9, 0x1BA, 0x1C7:
      return true
    default:
      return false
    }
  }

  /// The stable statistics name of class `c`: `op_` + opcode bytes in hex, `_rN` for the
  /// ModRM.reg digit, `_rep`/`_repne`/`_lock` for the prefix.
  static func name(_ c: Int) -> String {
    if c == Int(undecodable) { return "translator.untranslatable.undecodable" }
    let prefix = c >> 12
    let op = (c >> 3) & 0x1FF
    func hex(_ b: Int) -> String {
      let s = String(b, radix: 16)
      return s.count == 1 ? "0" + s : s
    }
    var n = "translator.untranslatable.op_" + (op >= 256 ? "0f_" + hex(op - 256) : hex(op))
    if hasDigit(op) { n += "_r\(c & 7)" }
    n += ["", "_rep", "_repne", "_lock"][prefix]
    return n
  }

  /// The `shown` most frequent classes, by name (ties: the lower class first).
  var top: [String: UInt64] {
    var hits: [(Int, UInt64)] = []
    for c in 0...Self.classes where counts[c] != 0 { hits.append((c, counts[c])) }
    hits.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
    var out: [String: UInt64] = [:]
    for (c, n) in hits.prefix(Self.shown) { out[Self.name(c)] = n }
    return out
  }
}

extension InterpreterCPU {
  /// The class (see StopCounts) of the instruction at host address `p`, which lies at
  /// least 16 bytes before its page's end. Reads the prefixes with the decoder's own
  /// `decodeStart`; changes only decode state the next instruction's decode resets.
  func untranslatableClass(_ p: UnsafeRawPointer) -> UInt16 {
    fetchPtr = UnsafeMutableRawPointer(mutating: p)
    fetchAvail = 15
    ipos = 0
    do {
      var op = Int(try decodeStart())
      if op == 0x0F { op = 256 + Int(try fetch8()) }
      let digit = StopCounts.hasDigit(op) ? (Int(try fetch8()) >> 3) & 7 : 0
      let prefix = lockPrefix ? 3 : rep == 0xF3 ? 1 : rep == 0xF2 ? 2 : 0
      return UInt16(prefix << 12 | op << 3 | digit)
    } catch {
      return StopCounts.undecodable
    }
  }
}
