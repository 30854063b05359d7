import Foundation

/// A JSON document as data: the config file and the API's request bodies are
/// read through it, so an unknown key or a wrong type is reported with its path
/// instead of being silently dropped by a `Decodable` struct.
public enum JSONValue: Equatable, Sendable {
  case null
  case bool(Bool)
  /// Integers stay exact (64-bit counts do not fit a Double).
  case integer(Int64)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public struct SyntaxError: Error, CustomStringConvertible {
    public var description: String
  }

  /// Parses UTF-8 JSON text. Foundation's parser bounds nesting depth, so hostile
  /// input cannot exhaust the stack.
  public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> JSONValue {
    do {
      return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    } catch let DecodingError.dataCorrupted(c) {
      let why = (c.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
      throw SyntaxError(description: "malformed JSON: \(why ?? c.debugDescription)")
    } catch {
      throw SyntaxError(description: "malformed JSON: \(error)")
    }
  }

  /// The JSON name of this value's type, for messages.
  public var typeName: String {
    switch self {
    case .null: return "null"
    case .bool: return "a boolean"
    case .integer, .number: return "a number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "an object"
    }
  }

  /// Compact JSON text with keys sorted, so output is stable.
  public var text: String {
    var out = ""
    write(to: &out)
    return out
  }

  private func write(to out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .integer(let i): out += String(i)
    case .number(let d): out += d.isFinite ? "\(d)" : "null"
    case .string(let s): JSONValue.quote(s, into: &out)
    case .array(let a):
      out += "["
      for (i, v) in a.enumerated() {
        if i > 0 { out += "," }
        v.write(to: &out)
      }
      out += "]"
    case .object(let o):
      out += "{"
      for (i, k) in o.keys.sorted().enumerated() {
        if i > 0 { out += "," }
        JSONValue.quote(k, into: &out)
        out += ":"
        o[k]!.write(to: &out)
      }
      out += "}"
    }
  }

  private static func quote(_ s: String, into out: inout String) {
    out += "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where u.value < 0x20:
        let h = String(u.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
      default: out.unicodeScalars.append(u)
      }
    }
    out += "\""
  }
}

extension JSONValue: Decodable {
  public init(from decoder: Decoder) throws {
    if var a = try? decoder.unkeyedContainer() {
      var items: [JSONValue] = []
      while !a.isAtEnd { items.append(try a.decode(JSONValue.self)) }
      self = .array(items)
      return
    }
    if let o = try? decoder.container(keyedBy: AnyKey.self) {
      var fields: [String: JSONValue] = [:]
      for k in o.allKeys { fields[k.stringValue] = try o.decode(JSONValue.self, forKey: k) }
      self = .object(fields)
      return
    }
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let i = try? c.decode(Int64.self) {
      self = .integer(i)
    } else if let d = try? c.decode(Double.self) {
      self = .number(d)
    } else {
      self = .string(try c.decode(String.self))
    }
  }

  private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }
}

/// An error in a JSON document, named by the path of the field at fault
/// (`drives[0].path_on_host`).
public struct JSONFieldError: Error, Equatable, CustomStringConvertible {
  public var path: String
  public var message: String

  public init(_ path: String, _ message: String) {
    self.path = path
    self.message = message
  }

  public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Reads one JSON object field by field; `finish()` refuses the keys nobody asked for.
public struct JSONObjectReader {
  public let path: String
  private let fields: [String: JSONValue]
  private var used = Set<String>()

  public init(_ value: JSONValue, path: String) throws(JSONFieldError) {
    guard case .object(let o) = value else {
      throw JSONFieldError(path, "expected an object, found \(value.typeName)")
    }
    self.path = path
    fields = o
  }

  public func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

  /// The raw value of `key` (nil when absent or null), marked as known.
  public mutating func value(_ key: String) -> JSONValue? {
    used.insert(key)
    guard let v = fields[key], v != .null else { return nil }
    return v
  }

  public mutating func string(_ key: String) throws(JSONFieldError) -> String? {
    guard let v = value(key) else { return nil }
    guard case .string(let s) = v else {
      throw JSONFieldError(child(key), "expected a string, found \(v.typeName)")
    }
    return s
  }

  public mutating func bool(_ key: String) throws(JSONFieldError) -> Bool? {
    guard let v = value(key) else { return nil }
    guard case .bool(let b) = v else {
      throw JSONFieldError(child(key), "expected true or false, found \(v.typeName)")
    }
    return b
  }

  /// An integer within `range`.
  public mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(JSONFieldError)
    -> Int64?
  {
    guard let v = value(key) else { return nil }
    guard case .integer(let i) = v else {
      throw JSONFieldError(child(key), "expected an integer, found \(v.typeName)")
    }
    guard range.contains(i) else {
      throw JSONFieldError(
        child(key), "\(i) is out of range (\(range.lowerBound)...\(range.upperBound))")
    }
    return i
  }

  public mutating func number(_ key: String) throws(JSONFieldError) -> Double? {
    guard let v = value(key) else { return nil }
    switch v {
    case .integer(let i): return Double(i)
    case .number(let d): return d
    default: throw JSONFieldError(child(key), "expected a number, found \(v.typeName)")
    }
  }

  public mutating func array(_ key: String) throws(JSONFieldError) -> [JSONValue]? {
    guard let v = value(key) else { return nil }
    guard case .array(let a) = v else {
      throw JSONFieldError(child(key), "expected an array, found \(v.typeName)")
    }
    return a
  }

  public mutating func require<T>(_ key: String, _ got: T?) throws(JSONFieldError) -> T {
    guard let got else { throw JSONFieldError(child(key), "is required") }
    return got
  }

  /// Refuses every key that was not read: a typo must not be ignored.
  public func finish() throws(JSONFieldError) {
    if let k = fields.keys.sorted().first(where: { !used.contains($0) }) {
      throw JSONFieldError(child(k), "unknown key")
    }
  }
}
