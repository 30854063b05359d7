/// The console's escape key, as in QEMU's `-nographic`: every byte the user
/// types goes to the guest except the escape key (Ctrl-A by default), which
/// starts a two-key command for the VMM. Escape then `x` quits, `h` prints
/// help, and escape twice sends one escape byte to the guest. Any other key
/// after the escape is swallowed, as QEMU does.
///
/// A pure state machine: bytes in, bytes for the guest and commands out. An
/// escape split across two reads is still recognised.
public struct ConsoleEscape: Sendable {
  public enum Command: Equatable, Sendable {
    case quit
    case help
    /// Escape then `s`: save a snapshot (`--snapshot-file`).
    case snapshot
  }

  /// The escape byte, or nil when the escape key is disabled.
  public let key: UInt8?
  private var armed = false

  public init(key: UInt8? = ConsoleEscape.defaultKey) { self.key = key }

  public static let defaultKey: UInt8 = 0x01  // Ctrl-A

  /// Splits host input into bytes for the guest and commands for the VMM, in
  /// the order typed: a command ends the chunk it was found in, so nothing
  /// typed after `Ctrl-A x` reaches the guest.
  public mutating func process(_ bytes: some Sequence<UInt8>) -> (
    forGuest: [UInt8], commands: [Command]
  ) {
    var out: [UInt8] = []
    var commands: [Command] = []
    guard let key else { return (Array(bytes), []) }
    for b in bytes {
      if armed {
        armed = false
        switch b {
        case key: out.append(key)
        case UInt8(ascii: "x"), UInt8(ascii: "X"): commands.append(.quit)
        case UInt8(ascii: "h"), UInt8(ascii: "H"), UInt8(ascii: "?"): commands.append(.help)
        case UInt8(ascii: "s"), UInt8(ascii: "S"): commands.append(.snapshot)
        default: break
        }
        if commands.last == .quit { return (out, commands) }
      } else if b == key {
        armed = true
      } else {
        out.append(b)
      }
    }
    return (out, commands)
  }

  /// How the user names the key: `ctrl-a`, `C-a`, `^A` (any letter or one of
  /// `@[\]^_`), or `none` to send every byte to the guest.
  public static func parse(_ text: String) -> UInt8?? {
    let t = text.lowercased()
    if t == "none" { return .some(nil) }
    var rest: Substring
    if t.hasPrefix("ctrl-") || t.hasPrefix("ctrl+") {
      rest = t.dropFirst(5)
    } else if t.hasPrefix("c-") {
      rest = t.dropFirst(2)
    } else if t.hasPrefix("^") {
      rest = t.dropFirst(1)
    } else {
      return nil
    }
    guard rest.count == 1, let c = rest.first?.asciiValue else { return nil }
    switch c {
    case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 1
    case UInt8(ascii: "@"): return 0
    case UInt8(ascii: "["), UInt8(ascii: "\\"), UInt8(ascii: "]"), UInt8(ascii: "^"),
      UInt8(ascii: "_"):
      return c - 0x40
    default: return nil
    }
  }

  /// The key as the user would write it, e.g. "Ctrl-A".
  public static func name(_ key: UInt8) -> String {
    let c = key + 0x40
    return "Ctrl-" + String(UnicodeScalar(c))
  }

  /// The help text for Escape-h.
  public func helpText() -> String {
    guard let key else { return "" }
    let k = ConsoleEscape.name(key)
    return """
      \(k) h        print this help
      \(k) x        quit the VM (the terminal is restored)
      \(k) s        save a snapshot to --snapshot-file (the VM runs on)
      \(k) \(k)   send \(k) to the guest
      """
  }
}
