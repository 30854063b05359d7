import Foundation

/// What a guest printed so far, appended from a pipe's reader and read by the test.
final class Transcript: @unchecked Sendable {
  private let lock = NSLock()
  private var text = ""

  func append(_ d: Data) {
    lock.lock()
    text += String(decoding: d, as: UTF8.self)
    lock.unlock()
  }

  var snapshot: String {
    lock.lock()
    defer { lock.unlock() }
    return text
  }
}
