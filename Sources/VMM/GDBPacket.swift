/// Framing of the GDB remote serial protocol: `$data#cs` packets with a modulo-256
/// checksum, `}`-escapes, `+`/`-` acknowledgements and the out-of-band Ctrl-C (0x03).
/// A byte-at-a-time state machine: any input, however malformed, yields events
/// and never more than `maxPacket` bytes of buffered data.
struct GDBPacketDecoder {
  enum Event: Equatable {
    /// A packet with a good checksum (escapes removed); the sender gets `+`.
    case packet([UInt8])
    /// A packet whose checksum did not match, or that was too long; the sender gets `-`.
    case badPacket
    /// Ctrl-C outside a packet: stop the target.
    case interrupt
    case ack
    case nak
  }

  static let maxPacket = 16 * 1024

  private enum State { case idle, data, escape, checksum1, checksum2 }
  private var state = State.idle
  private var data: [UInt8] = []
  private var sum: UInt8 = 0
  private var given: UInt8 = 0
  private var overflow = false

  mutating func feed(_ byte: UInt8) -> Event? {
    switch state {
    case .idle:
      switch byte {
      case UInt8(ascii: "$"):
        begin()
      case 0x03: return .interrupt
      case UInt8(ascii: "+"): return .ack
      case UInt8(ascii: "-"): return .nak
      default: break  // noise between packets is ignored, as gdbserver does
      }
    case .data:
      switch byte {
      case UInt8(ascii: "#"): state = .checksum1
      case UInt8(ascii: "$"): begin()  // a new packet restarts framing
      case UInt8(ascii: "}"):
        sum &+= byte
        state = .escape
      default:
        sum &+= byte
        append(byte)
      }
    case .escape:
      sum &+= byte
      append(byte ^ 0x20)
      state = .data
    case .checksum1:
      guard let v = GDBHex.nibble(byte) else {
        state = .idle
        return .badPacket
      }
      given = v << 4
      state = .checksum2
    case .checksum2:
      state = .idle
      guard let v = GDBHex.nibble(byte), given | v == sum, !overflow else { return .badPacket }
      let p = data
      data = []
      return .packet(p)
    }
    return nil
  }

  private mutating func begin() {
    state = .data
    data.removeAll(keepingCapacity: true)
    sum = 0
    overflow = false
  }

  private mutating func append(_ b: UInt8) {
    if data.count < GDBPacketDecoder.maxPacket { data.append(b) } else { overflow = true }
  }

  /// `$payload#cs` with `$`, `#`, `}` and `*` escaped.
  static func frame(_ payload: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "$")]
    var sum: UInt8 = 0
    for b in payload {
      switch b {
      case UInt8(ascii: "$"), UInt8(ascii: "#"), UInt8(ascii: "}"), UInt8(ascii: "*"):
        out.append(UInt8(ascii: "}"))
        out.append(b ^ 0x20)
        sum &+= UInt8(ascii: "}") &+ (b ^ 0x20)
      default:
        out.append(b)
        sum &+= b
      }
    }
    out.append(UInt8(ascii: "#"))
    out += GDBHex.byte(sum)
    return out
  }
}

/// Hex as the protocol writes it: lower case, two digits per byte.
enum GDBHex {
  static func nibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
  }

  static let digits = Array("0123456789abcdef".utf8)

  static func byte(_ b: UInt8) -> [UInt8] { [digits[Int(b >> 4)], digits[Int(b & 15)]] }

  static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    var out: [UInt8] = []
    for b in bytes { out += byte(b) }
    return String(decoding: out, as: UTF8.self)
  }

  /// Bytes from an even-length hex string; nil if it is not one.
  static func decode<S: Collection>(_ s: S) -> [UInt8]? where S.Element == UInt8 {
    guard s.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(s.count / 2)
    var i = s.startIndex
    while i != s.endIndex {
      let j = s.index(after: i)
      guard let hi = nibble(s[i]), let lo = nibble(s[j]) else { return nil }
      out.append(hi << 4 | lo)
      i = s.index(after: j)
    }
    return out
  }

  /// A big-endian hex number (addresses, lengths); nil if empty, not hex, or over 64 bits.
  static func number<S: Collection>(_ s: S) -> UInt64? where S.Element == UInt8 {
    guard !s.isEmpty, s.count <= 16 else { return nil }
    var v: UInt64 = 0
    for c in s {
      guard let d = nibble(c) else { return nil }
      v = v << 4 | UInt64(d)
    }
    return v
  }

  /// Little-endian hex of the low `size` bytes of `v` (register values).
  static func littleEndian(_ v: UInt64, size: Int) -> String {
    encode((0..<size).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) })
  }
}
