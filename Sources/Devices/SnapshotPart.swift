import Foundation

/// A part of the machine whose state a snapshot holds: a device, a clock, a
/// platform. The machine finds its parts on the buses (and a few it owns), so a
/// new device joins snapshots by conforming, without a list to edit elsewhere.
public protocol SnapshotPart: AnyObject {
  /// Stable name of this kind of part ("uart16550"); never change it once shipped.
  var snapshotKind: String { get }
  /// The part's state as a versioned record.
  func saveState() throws -> [UInt8]
  /// Puts back a record from `saveState()`; throws `SnapshotStateError` for a
  /// record it cannot take (wrong version, values out of range).
  func restoreState(_ record: [UInt8]) throws
}

/// A part whose state is one `Codable` value, stored as versioned JSON.
public protocol CodableSnapshotPart: SnapshotPart {
  associatedtype State: Codable
  /// Bumped whenever `State` changes incompatibly; older records are refused.
  static var stateVersion: Int { get }
  func captureState() -> State
  /// Checks and applies `state`; throws before changing anything when it is invalid.
  func applyState(_ state: State) throws
}

public enum SnapshotStateError: Error, Equatable, CustomStringConvertible {
  case undecodable(part: String, reason: String)
  case versionMismatch(part: String, found: Int, expected: Int)
  case invalid(part: String, reason: String)

  public var description: String {
    switch self {
    case .undecodable(let p, let r): return "state of \(p) cannot be read: \(r)"
    case .versionMismatch(let p, let f, let e):
      return "state of \(p) has version \(f), this SwiftVMM reads version \(e)"
    case .invalid(let p, let r): return "state of \(p) is invalid: \(r)"
    }
  }
}

private struct StateEnvelope<State: Codable>: Codable {
  var version: Int
  var state: State
}

private struct VersionOnly: Codable { var version: Int }

extension CodableSnapshotPart {
  public func saveState() throws -> [UInt8] {
    let e = JSONEncoder()
    e.outputFormatting = .sortedKeys
    return Array(try e.encode(StateEnvelope(version: Self.stateVersion, state: captureState())))
  }

  public func restoreState(_ record: [UInt8]) throws {
    let data = Data(record)
    let d = JSONDecoder()
    let v: VersionOnly
    do { v = try d.decode(VersionOnly.self, from: data) } catch {
      throw SnapshotStateError.undecodable(part: snapshotKind, reason: "no version field")
    }
    guard v.version == Self.stateVersion else {
      throw SnapshotStateError.versionMismatch(
        part: snapshotKind, found: v.version, expected: Self.stateVersion)
    }
    let s: StateEnvelope<State>
    do { s = try d.decode(StateEnvelope<State>.self, from: data) } catch {
      throw SnapshotStateError.undecodable(part: snapshotKind, reason: "\(error)")
    }
    try applyState(s.state)
  }

  /// Throws `.invalid` for this part unless `ok`.
  public func require(_ ok: Bool, _ reason: @autoclosure () -> String) throws {
    if !ok { throw SnapshotStateError.invalid(part: snapshotKind, reason: reason()) }
  }
}

extension GuestTSC {
  /// A restored snapshot's TSC offset (the guest clock is restored separately).
  public func restore(offset: UInt64) { self.offset = offset }
}

/// A device with no state of its own (or whose state another part holds): the
/// machine refuses to snapshot a bus device that is neither this nor a `SnapshotPart`,
/// so a new device cannot be forgotten silently.
public protocol StatelessDevice: AnyObject {}

extension DebugExitDevice: StatelessDevice {}
/// Its device's state is the device's part.
extension PCIBARWindow: StatelessDevice {}
