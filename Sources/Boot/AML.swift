/// A tiny ACPI Machine Language encoder: just the terms our DSDT needs
/// (ACPI 6.x, section 20). Each function returns the encoded bytes of one term.
public enum AML {
  /// PkgLength: the length of what follows *including* the PkgLength bytes themselves.
  static func pkgLength(_ payload: Int) -> [UInt8] {
    if payload + 1 <= 0x3F { return [UInt8(payload + 1)] }
    for extra in 1...3 {
      let total = payload + 1 + extra
      if total < 1 << (4 + 8 * extra) {
        var out: [UInt8] = [UInt8(extra << 6) | UInt8(total & 0xF)]
        for i in 0..<extra { out.append(UInt8((total >> (4 + 8 * i)) & 0xFF)) }
        return out
      }
    }
    preconditionFailure("AML package of \(payload) bytes exceeds 256 MiB")
  }

  /// A NameSeg is exactly four characters, padded with '_'.
  static func nameSeg(_ s: Substring) -> [UInt8] {
    var b = Array(s.utf8.prefix(4))
    while b.count < 4 { b.append(UInt8(ascii: "_")) }
    return b
  }

  /// NameString: optional root '\', then one, two (DualNamePrefix) or more (MultiNamePrefix) segments.
  public static func name(_ path: String) -> [UInt8] {
    var out: [UInt8] = []
    var rest = Substring(path)
    if rest.hasPrefix("\\") {
      out.append(0x5C)
      rest = rest.dropFirst()
    }
    let segs = rest.split(separator: ".")
    switch segs.count {
    case 0: out.append(0x00)  // NullName
    case 1: out += nameSeg(segs[0])
    case 2: out += [0x2E] + nameSeg(segs[0]) + nameSeg(segs[1])
    default:
      out += [0x2F, UInt8(segs.count)]
      for s in segs { out += nameSeg(s) }
    }
    return out
  }

  /// The smallest integer encoding (ZeroOp, OneOp, Byte/Word/DWord/QWord prefix).
  public static func integer(_ v: UInt64) -> [UInt8] {
    switch v {
    case 0: return [0x00]
    case 1: return [0x01]
    case ...0xFF: return [0x0A, UInt8(v)]
    case ...0xFFFF: return [0x0B] + le(v, 2)
    case ...0xFFFF_FFFF: return [0x0C] + le(v, 4)
    default: return [0x0E] + le(v, 8)
    }
  }

  public static func string(_ s: String) -> [UInt8] { [0x0D] + Array(s.utf8) + [0] }

  /// Name(path, object)
  public static func nameDecl(_ path: String, _ object: [UInt8]) -> [UInt8] {
    [0x08] + name(path) + object
  }

  /// Scope(path) { body }
  public static func scope(_ path: String, _ body: [UInt8]) -> [UInt8] {
    let inner = name(path) + body
    return [0x10] + pkgLength(inner.count) + inner
  }

  /// Device(path) { body }
  public static func device(_ path: String, _ body: [UInt8]) -> [UInt8] {
    let inner = name(path) + body
    return [0x5B, 0x82] + pkgLength(inner.count) + inner
  }

  /// Package(n) { elements }, each element already encoded.
  public static func package(_ elements: [[UInt8]]) -> [UInt8] {
    precondition(elements.count <= 255)
    let inner = [UInt8(elements.count)] + elements.flatMap { $0 }
    return [0x12] + pkgLength(inner.count) + inner
  }

  /// Buffer() { bytes }
  public static func buffer(_ bytes: [UInt8]) -> [UInt8] {
    let inner = integer(UInt64(bytes.count)) + bytes
    return [0x11] + pkgLength(inner.count) + inner
  }

  /// EISAID("PNP0501"): three compressed letters then four hex digits, stored big-endian.
  public static func eisaID(_ id: String) -> [UInt8] {
    let c = Array(id.utf8)
    precondition(c.count == 7)
    func letter(_ x: UInt8) -> UInt32 { UInt32(x - 0x40) & 0x1F }
    func hex(_ x: UInt8) -> UInt32 { UInt32(Int(String(UnicodeScalar(x)), radix: 16) ?? 0) }
    let v: UInt32 =
      letter(c[0]) << 26 | letter(c[1]) << 21 | letter(c[2]) << 16 | hex(c[3]) << 12 | hex(c[4])
      << 8
      | hex(c[5]) << 4 | hex(c[6])
    return integer(UInt64(v.byteSwapped))
  }

  /// Resource descriptors for _CRS (small resource items, section 6.4.2).
  public enum Resource {
    /// IO(Decode16, base, base, 1, length)
    public static func io(_ base: UInt16, length: UInt8) -> [UInt8] {
      [0x47, 0x01] + le(UInt64(base), 2) + le(UInt64(base), 2) + [0x01, length]
    }
    /// IRQNoFlags() { irq }: edge triggered, active high.
    public static func irq(_ irq: UInt8) -> [UInt8] {
      [0x22] + le(UInt64(1) << UInt64(irq), 2)
    }
    /// Word Address Space Descriptor (large item 0x88) a bridge produces:
    /// type 1 = I/O (entire range), 2 = bus numbers; min and max fixed.
    public static func wordAddress(type: UInt8, min: UInt16, max: UInt16) -> [UInt8] {
      let typeFlags: UInt8 = type == 1 ? 0x03 : 0
      return [0x88] + le(13, 2) + [type, 0x0C, typeFlags] + le(0, 2) + le(UInt64(min), 2)
        + le(UInt64(max), 2) + le(0, 2) + le(UInt64(max) - UInt64(min) + 1, 2)
    }
    /// DWord Address Space Descriptor (large item 0x87): a read-write,
    /// non-cacheable memory window the bridge produces; min and max fixed.
    public static func dwordMemory(_ range: Range<UInt64>) -> [UInt8] {
      [0x87] + le(23, 2) + [0, 0x0C, 0x01] + le(0, 4) + le(range.lowerBound, 4)
        + le(range.upperBound - 1, 4) + le(0, 4) + le(range.upperBound - range.lowerBound, 4)
    }
    /// The end tag closes a template; checksum 0 means "treat as valid".
    public static func template(_ items: [[UInt8]]) -> [UInt8] {
      AML.buffer(items.flatMap { $0 } + [0x79, 0x00])
    }
  }

  static func le(_ v: UInt64, _ n: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
  }
}
