/// `--net none | user[,hostfwd=tcp:ADDR:HPORT-:GPORT,...] | tap=NAME`, parsed in one
/// place with one-line errors before anything boots.
public enum NetworkSpec: Equatable, Sendable {
  case none
  case user(forwards: [PortForward])
  case tap(name: String)

  /// One `hostfwd=PROTO:[ADDR]:HPORT-[GADDR]:GPORT`, as QEMU spells it. The guest
  /// address is always the DHCP address (10.0.2.15).
  public struct PortForward: Equatable, Sendable {
    public var udp: Bool
    public var hostAddress: String
    public var hostPort: Int
    public var guestPort: Int
  }

  public struct ParseError: Error, Equatable, CustomStringConvertible {
    public var description: String
  }

  /// The guest's MAC address: QEMU's default OUI range, so guests treat it as ordinary.
  public static let defaultMAC: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

  /// `52:54:00:12:34:56`; nil unless six hex pairs. Multicast addresses are refused.
  public static func parseMAC(_ s: String) -> [UInt8]? {
    let p = s.split(separator: ":", omittingEmptySubsequences: false)
    guard p.count == 6 else { return nil }
    let bytes = p.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
    guard bytes.count == 6, bytes[0] & 1 == 0 else { return nil }
    return bytes
  }

  public static func formatMAC(_ m: [UInt8]) -> String {
    m.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
  }

  /// The `--net` text that `parse` reads back as this spec (snapshots store it).
  public var spec: String {
    switch self {
    case .none: return "none"
    case .tap(let name): return "tap=" + name
    case .user(let forwards):
      return
        (["user"]
        + forwards.map {
          "hostfwd=\($0.udp ? "udp" : "tcp"):\($0.hostAddress):\($0.hostPort)-:\($0.guestPort)"
        }).joined(separator: ",")
    }
  }

  public static func parse(_ spec: String) throws(ParseError) -> NetworkSpec {
    func fail(_ why: String) -> ParseError { ParseError(description: "--net \(spec): \(why)") }
    let parts = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    switch parts[0] {
    case "none":
      guard parts.count == 1 else { throw fail("'none' takes no options") }
      return .none
    case "user":
      var forwards: [PortForward] = []
      for p in parts.dropFirst() {
        guard p.hasPrefix("hostfwd=") else {
          throw fail("unknown option '\(p)'; user takes hostfwd=tcp:ADDR:HPORT-:GPORT")
        }
        let f = try parseForward(String(p.dropFirst("hostfwd=".count)), fail)
        if forwards.contains(where: { $0.udp == f.udp && $0.hostPort == f.hostPort }) {
          throw fail("host port \(f.hostPort) is forwarded twice")
        }
        forwards.append(f)
      }
      return .user(forwards: forwards)
    default:
      if parts[0].hasPrefix("tap=") {
        let name = String(parts[0].dropFirst(4))
        guard parts.count == 1, !name.isEmpty, name.utf8.count < 16,
          name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) })
        else { throw fail("expected tap=NAME, NAME up to 15 letters, digits, '-', '_' or '.'") }
        return .tap(name: name)
      }
      throw fail("choose none, user[,hostfwd=...] or tap=NAME")
    }
  }

  private static func parseForward(
    _ s: String, _ fail: (String) -> ParseError
  ) throws(ParseError) -> PortForward {
    // tcp:127.0.0.1:2222-:22  (the protocol, host address and guest address are optional)
    var rest = Substring(s)
    var udp = false
    if rest.hasPrefix("tcp:") {
      rest = rest.dropFirst(4)
    } else if rest.hasPrefix("udp:") {
      udp = true
      rest = rest.dropFirst(4)
    }
    let halves = rest.split(separator: "-", omittingEmptySubsequences: false)
    guard halves.count == 2 else {
      throw fail("hostfwd '\(s)': expected [tcp|udp]:[ADDR]:HPORT-:GPORT")
    }
    func split(_ h: Substring) -> (String, String) {
      if let c = h.lastIndex(of: ":") { return (String(h[..<c]), String(h[h.index(after: c)...])) }
      return ("", String(h))
    }
    let (hostAddress, hostPortText) = split(halves[0])
    let (guestAddress, guestPortText) = split(halves[1])
    guard let hp = Int(hostPortText), (1...65535).contains(hp), let gp = Int(guestPortText),
      (1...65535).contains(gp)
    else { throw fail("hostfwd '\(s)': ports must be numbers from 1 to 65535") }
    let address = hostAddress.isEmpty ? "127.0.0.1" : hostAddress
    guard isIPv4(address) else { throw fail("hostfwd '\(s)': '\(address)' is not an IPv4 address") }
    guard guestAddress.isEmpty || guestAddress == "10.0.2.15" else {
      throw fail("hostfwd '\(s)': the guest address is always 10.0.2.15")
    }
    return PortForward(udp: udp, hostAddress: address, hostPort: hp, guestPort: gp)
  }

  static func isIPv4(_ s: String) -> Bool {
    let p = s.split(separator: ".", omittingEmptySubsequences: false)
    return p.count == 4 && p.allSatisfy { Int($0).map { (0...255).contains($0) } ?? false }
  }
}
