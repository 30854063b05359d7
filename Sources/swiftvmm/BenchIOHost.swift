import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Loopback TCP helpers for `bench io`'s network rows.
enum BenchSocket {
  /// A TCP socket bound to `host`:`port` (0: any free port), listening when asked.
  static func bound(host: String = "127.0.0.1", port: Int = 0, listen doListen: Bool) -> (
    fd: Int32, port: Int
  )? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    guard var a = address(host: host, port: port) else {
      close(fd)
      return nil
    }
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

  static func address(host: String, port: Int) -> sockaddr_in? {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = UInt16(port).bigEndian
    guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { return nil }
    return a
  }
}

/// Guest -> host: accepts one connection on `host` and counts bytes until EOF or
/// the expected amount, then closes, which ends the guest's `nc`.
final class HostSink {
  let port: Int
  private let fd: Int32
  private let lock = NSLock()
  private var count = 0
  private var connection: Int32 = -1
  var received: Int { lock.withLock { count } }

  init?(expecting bytes: Int, host: String = "127.0.0.1") {
    guard let (fd, port) = BenchSocket.bound(host: host, listen: true) else { return nil }
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

/// Host -> guest: once started, connects to `host`:`port` (a forwarded loopback port,
/// or the guest itself over TAP) and sends zeros, then closes.
final class HostSource {
  let port: Int
  private let host: String
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
    self.host = "127.0.0.1"
    self.port = port
    self.bytes = bytes
  }

  /// Sends straight to a listener at `host`:`port` (the guest over TAP).
  init(bytes: Int, host: String, port: Int) {
    self.host = host
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
        guard var a = BenchSocket.address(host: host, port: port) else {
          close(fd)
          return
        }
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

/// A TAP device on the host for the TAP rows: created with iproute2 (root only), the
/// host side at `hostAddress`, removed again by `remove()`.
final class BenchTap {
  static let hostAddress = "192.168.213.1"
  static let guestAddress = "192.168.213.2"
  let name: String
  private let ip: String

  /// Nil with the reason when this host cannot have one.
  static func create() -> (BenchTap?, String?) {
    guard geteuid() == 0 else { return (nil, "TAP rows need root") }
    guard FileManager.default.fileExists(atPath: "/dev/net/tun") else {
      return (nil, "no /dev/net/tun on this host")
    }
    guard
      let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first(where: {
        FileManager.default.isExecutableFile(atPath: $0)
      })
    else { return (nil, "the ip command (iproute2) is missing") }
    // One fixed name: a run killed before its clean-up leaves the device behind, and
    // the next run removes it first instead of adding a second one on the same subnet.
    let tap = BenchTap(name: "svbench0", ip: ip)
    tap.remove()
    for step in [
      ["tuntap", "add", "dev", tap.name, "mode", "tap"],
      ["addr", "add", "\(hostAddress)/24", "dev", tap.name], ["link", "set", tap.name, "up"],
    ] {
      guard (try? BenchMeasure.runChild(ip, step, okStatus: 0))?.ok == true else {
        tap.remove()
        return (nil, "`ip \(step.joined(separator: " "))` failed")
      }
    }
    return (tap, nil)
  }

  private init(name: String, ip: String) {
    self.name = name
    self.ip = ip
  }

  func remove() { _ = try? BenchMeasure.runChild(ip, ["link", "del", name], okStatus: 0) }
}
