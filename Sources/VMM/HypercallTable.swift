/// The VMM's one route for hypercalls (VMCALL/VMMCALL from any engine): number
/// -> handler. Services (the paravirtual MMU) register their numbers; anything
/// else answers -ENOSYS, as KVM does for hypercalls it does not know.
public final class HypercallTable {
  /// Arguments in the order of `VMExit.hypercall` (RBX, RCX, RDX, RSI); returns RAX.
  public typealias Handler = (_ number: UInt64, _ arguments: [UInt64]) -> UInt64

  /// -ENOSYS (38) as the guest reads RAX.
  public static let enosys = UInt64(bitPattern: -38)

  public enum RegistrationError: Error, Equatable, CustomStringConvertible {
    case taken(number: UInt64, by: String)
    public var description: String {
      switch self {
      case .taken(let n, let by): return "hypercall 0x\(String(n, radix: 16)) is already \(by)'s"
      }
    }
  }

  private var handlers: [UInt64: (owner: String, handle: Handler)] = [:]
  /// Hypercalls that named no registered number.
  public private(set) var unknownCalls: UInt64 = 0

  public init() {}

  /// Claims `number` for `owner`; one owner per number.
  public func register(_ number: UInt64, owner: String, _ handler: @escaping Handler) throws {
    if let h = handlers[number] { throw RegistrationError.taken(number: number, by: h.owner) }
    handlers[number] = (owner, handler)
  }

  /// The RAX value for this hypercall.
  public func call(number: UInt64, arguments: [UInt64]) -> UInt64 {
    guard let h = handlers[number] else {
      unknownCalls &+= 1
      return Self.enosys
    }
    return h.handle(number, arguments)
  }

  public var registeredNumbers: [UInt64] { handlers.keys.sorted() }
}
