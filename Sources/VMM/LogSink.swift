import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Where the VMM's log goes: standard error (swift-log's own format) until the
/// API's `PUT /logger` names a file or FIFO. One level for every logger, changeable
/// while the VM runs. A line that cannot be written at once (a FIFO nobody reads)
/// is dropped: logging never blocks the vCPU thread.
public final class LogSink: @unchecked Sendable {
  public static let shared = LogSink()
  public init() {}

  private let lock = NSLock()
  private var _level: Logger.Level = .warning
  private var fd: Int32?
  private var showLevel = true
  private var showOrigin = false

  public var level: Logger.Level {
    get {
      lock.lock()
      defer { lock.unlock() }
      return _level
    }
    set {
      lock.lock()
      _level = newValue
      lock.unlock()
    }
  }

  public struct OpenError: Error, CustomStringConvertible {
    public var description: String
  }

  /// Sends every later line to `path` (appended; created if missing).
  public func redirect(
    to path: String, showLevel: Bool = true, showOrigin: Bool = false
  ) throws(OpenError) {
    let new = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0o644)
    guard new >= 0 else {
      throw OpenError(description: "cannot open \(path): \(String(cString: strerror(errno)))")
    }
    lock.lock()
    let old = fd
    fd = new
    self.showLevel = showLevel
    self.showOrigin = showOrigin
    lock.unlock()
    if let old { close(old) }
  }

  /// The handler `LoggingSystem.bootstrap` installs for every label.
  public func handler(label: String) -> LogHandler {
    SinkHandler(label: label, sink: self, stderr: StreamLogHandler.standardError(label: label))
  }

  fileprivate func write(
    label: String, level: Logger.Level, message: Logger.Message, metadata: String,
    source: String, file: String, line: UInt
  ) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard let fd else { return false }
    var text = ISO8601DateFormatter().string(from: Date())
    if showLevel { text += " \(level)" }
    text += " \(label):\(metadata) [\(source)]"
    if showOrigin { text += " \((file as NSString).lastPathComponent):\(line)" }
    let bytes = Array((text + " \(message)\n").utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    return true
  }
}

private struct SinkHandler: LogHandler {
  let label: String
  let sink: LogSink
  var stderr: StreamLogHandler
  var metadata: Logger.Metadata = [:]

  var logLevel: Logger.Level {
    get { sink.level }
    set { sink.level = newValue }
  }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(
    level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
    file: String, function: String, line: UInt
  ) {
    let all = metadata.merging(extra ?? [:]) { $1 }
    let text =
      all.isEmpty
      ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
    if !sink.write(
      label: label, level: level, message: message, metadata: text, source: source, file: file,
      line: line)
    {
      stderr.log(
        level: level, message: message, metadata: all, source: source, file: file,
        function: function, line: line)
    }
  }
}
