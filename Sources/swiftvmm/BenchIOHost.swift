import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Loopback TCP helpers for `bench io`'s network rows.
enum BenchSocket {
  /// A TCP socket bound to 127.0.0.1:`port` (0: any free port), listening when asked.
  static func bound(port: Int = 0, listen doListen: Bool) -> (fd: Int32, port: Int)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var a = address(port: port)
    let ok = withUnsafePointer(to: &a) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
      }
    }
    guard ok, !doListen || listen(fd, 1) == 0 else {
      close(fd)
      return nil
    }
    var got = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &got) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return (fd, Int(UInt16(bigEndian: got.sin_port)))
  }

  static func address(port: Int) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = UInt16(port).bigEndian
    a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return a
  }
}

/// Guest -> host: accepts one connection on 127.0.0.1 and counts bytes until EOF or
/// the expected amount, then closes, which ends the guest's `nc`.
final class HostSink {
  let port: Int
  private let fd: Int32
  private let lock = NSLock()
  private var count = 0
  private var connection: Int32 = -1
  var received: Int { lock.withLock { count } }

  init?(expecting bytes: Int) {
    guard let (fd, port) = BenchSocket.bound(listen: true) else { return nil }
    self.fd = fd
    self.port = port
    Thread.detachNewThread { [self] in
      let c = accept(fd, nil, nil)
      guard c >= 0 else { return }
      lock.withLock { connection = c }
      var buf = [UInt8](repeating: 0, count: 1 << 16)
      while received < bytes {
        let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        lock.withLock { count += n }
      }
      lock.withLock { connection = -1 }
      close(c)
    }
  }

  /// Wakes the thread if the guest never connected or stalled.
  func stop() {
    shutdown(fd, Int32(SHUT_RDWR))
    lock.withLock { if connection >= 0 { shutdown(connection, Int32(SHUT_RDWR)) } }
  }
  deinit { close(fd) }
}

/// Host -> guest: once started, connects to the forwarded port and sends zeros, then closes.
final class HostSource {
  let port: Int
  private let bytes: Int
  private let lock = NSLock()
  private var count = 0
  private let done = DispatchSemaphore(value: 0)
  private var started = false
  var sent: Int { lock.withLock { count } }

  /// Picks a free loopback port for the VMM's port forward.
  init?(bytes: Int) {
    guard let (fd, port) = BenchSocket.bound(listen: false) else { return nil }
    close(fd)
    self.port = port
    self.bytes = bytes
  }

  func start() {
    guard
      lock.withLock({ () -> Bool in
        defer { started = true }
        return !started
      })
    else { return }
    Thread.detachNewThread { [self] in
      defer { done.signal() }
      // The guest listens before its marker, but the forward may need a moment.
      for _ in 0..<50 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return }
        var a = BenchSocket.address(port: port)
        let ok = withUnsafePointer(to: &a) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
          }
        }
        if !ok {
          close(fd)
          usleep(100_000)
          continue
        }
        let buf = [UInt8](repeating: 0, count: 1 << 16)
        while sent < bytes {
          let want = min(buf.count, bytes - sent)
          let n = buf.withUnsafeBytes { send(fd, $0.baseAddress, want, Int32(MSG_NOSIGNAL)) }
          if n < 0 && errno == EINTR { continue }
          if n <= 0 { break }
          lock.withLock { count += n }
        }
        close(fd)
        return
      }
    }
  }

  /// Waits for the sender thread, if it started.
  func finish() {
    if lock.withLock({ started }) { done.wait() }
  }
}
