#if canImport(Glibc)
  import Glibc
#endif

/// Where the guest's serial output goes: a host file descriptor (stdout) or,
/// for tests, a capture buffer. Buffered; flushed when full, on a newline at most
/// every `newlineFlushNanoseconds` (a guest printing line after line costs one
/// write per few milliseconds, not one per line), and whenever the vCPU leaves
/// guest code for anything but a device access (halt, timer kick, stop).
public final class ConsoleOutput {
  private var buffer: [UInt8] = []
  private let fd: Int32?
  /// Where flushed output goes instead of a descriptor (a library user's callback).
  private let handler: (([UInt8]) -> Void)?
  public private(set) var captured: [UInt8] = []

  public init(fd: Int32 = 1) {
    self.fd = fd
    handler = nil
  }
  /// Keeps everything in `captured` instead of writing it anywhere.
  public init(capturing: ()) {
    self.fd = nil
    handler = nil
  }
  /// Hands each flushed run of bytes to `handler`, on the vCPU thread; nothing is kept.
  public init(handler: @escaping ([UInt8]) -> Void) {
    self.fd = -1  // buffered like a descriptor, but flushed to the handler
    self.handler = handler
  }

  public var capturedText: String { String(decoding: captured, as: UTF8.self) }

  /// Called with each complete captured line, on the vCPU thread, while the guest
  /// runs: `bench io` samples the machine's counters at the guest's phase markers.
  public var lineObserver: ((Substring) -> Void)?
  private var lineStart = 0

  private var watched: (marker: [UInt8], action: () -> Void)?

  /// In capture mode, calls `action` (on the vCPU thread) once the output ends with
  /// `text`: tests stop a guest that never exits, such as memtest86+, at a marker.
  public func whenCaptured(_ text: String, _ action: @escaping () -> Void) {
    watched = (Array(text.utf8), action)
  }

  public func write(_ byte: UInt8) {
    guard fd != nil else {
      captured.append(byte)
      if let w = watched, byte == w.marker.last, captured.count >= w.marker.count,
        captured.suffix(w.marker.count).elementsEqual(w.marker)
      {
        watched = nil
        w.action()
      }
      if byte == 0x0A, let lineObserver {
        lineObserver(Substring(decoding: captured[lineStart..<(captured.count - 1)], as: UTF8.self))
        lineStart = captured.count
      } else if byte == 0x0A {
        lineStart = captured.count
      }
      return
    }
    buffer.append(byte)
    if buffer.count >= ConsoleOutput.bufferLimit {
      flush()
    } else if byte == 0x0A {
      let now = ConsoleOutput.coarseNow()
      if now &- lastFlush >= ConsoleOutput.newlineFlushNanoseconds { flush(at: now) }
    }
  }

  public static let bufferLimit = 4096
  /// A line is shown at once unless the last flush was more recent than this.
  public static let newlineFlushNanoseconds: UInt64 = 5_000_000
  private var lastFlush: UInt64 = 0
  /// Writes to the descriptor or handler (not captures), for tests and `--stats`.
  public private(set) var flushes: UInt64 = 0

  /// CLOCK_MONOTONIC_COARSE: a few ns from the vDSO, good to a tick.
  private static func coarseNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
  }

  /// Text from the VMM itself (the escape key's help), written at once from
  /// any thread; the guest's buffered bytes are not touched.
  public func writeDirectly(_ text: String) {
    guard let fd, handler == nil else {
      return
    }
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
  }

  public func flush() { flush(at: ConsoleOutput.coarseNow()) }

  private func flush(at now: UInt64) {
    guard let fd, !buffer.isEmpty else { return }
    lastFlush = now
    flushes &+= 1
    if let handler {
      handler(buffer)
      buffer.removeAll(keepingCapacity: true)
      return
    }
    var done = 0
    buffer.withUnsafeBytes { raw in
      while done < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
        if n > 0 {
          done += n
        } else if n < 0 && errno == EINTR {
          continue
        } else {
          break  // stdout closed: the guest's output has nowhere to go; drop it.
        }
      }
    }
    buffer.removeAll(keepingCapacity: true)
  }
}
