import Engine
import Foundation
import X86

#if canImport(Glibc)
  import Glibc
#endif

/// Where `--gdb` listens: `tcp:HOST:PORT` or `unix:PATH`.
public enum GDBEndpoint: Equatable, CustomStringConvertible {
  case tcp(host: String, port: UInt16)
  case unix(path: String)

  public init(parsing s: String) throws {
    if s.hasPrefix("unix:") {
      let path = String(s.dropFirst(5))
      guard !path.isEmpty, path.utf8.count < 108 else {
        throw GDBServerError("--gdb unix:PATH needs a path shorter than 108 bytes")
      }
      self = .unix(path: path)
    } else if s.hasPrefix("tcp:") {
      let rest = s.dropFirst(4)
      guard let colon = rest.lastIndex(of: ":"),
        let port = UInt16(rest[rest.index(after: colon)...])
      else { throw GDBServerError("--gdb tcp:HOST:PORT needs a port number (0-65535), got '\(s)'") }
      let host = String(rest[..<colon])
      var a = in_addr()
      guard inet_pton(AF_INET, host, &a) == 1 else {
        throw GDBServerError("--gdb: '\(host)' is not an IPv4 address (e.g. 127.0.0.1)")
      }
      self = .tcp(host: host, port: port)
    } else {
      throw GDBServerError("--gdb takes tcp:HOST:PORT or unix:PATH, got '\(s)'")
    }
  }

  public var description: String {
    switch self {
    case .tcp(let h, let p): return "tcp:\(h):\(p)"
    case .unix(let p): return "unix:\(p)"
    }
  }
}

public struct GDBServerError: Error, CustomStringConvertible {
  public let description: String
  init(_ s: String) { description = s }
}

/// `--gdb`: serves the GDB remote protocol to one client at a time on a thread of its own,
/// driving the VM through `MachineGDBTarget` (pause, requests on the vCPU thread, resume).
/// Further clients are turned away while one is connected; a client that disconnects
/// detaches (the VM runs on).
public final class GDBServer {
  public let endpoint: GDBEndpoint
  private let listenFD: Int32
  private let wakeRead: Int32
  private let wakeWrite: Int32
  private let target: MachineGDBTarget
  private let lock = NSCondition()
  private var closing = false
  private var exitReported = false
  private var thread: Thread?
  /// The port actually bound (tcp port 0 picks one).
  public private(set) var boundPort: UInt16 = 0

  /// Binds and listens; refuses engines without debug stops (KVM: KVM_SET_GUEST_DEBUG is
  /// not verified under this host's KVM-PVM) and SMP guests (one vCPU is debugged).
  public init(
    endpoint: GDBEndpoint, machine: @escaping () -> Machine,
    stopVM: @escaping (MachineOutcome) -> Void
  ) throws {
    let m = machine()
    guard m.cpu.supportsDebugStops else {
      throw GDBServerError(
        "--gdb needs the interpreter or translator engine (the \(m.cpu.engineName) engine has no debug stops)"
      )
    }
    guard m.cpus.count == 1 else { throw GDBServerError("--gdb debugs one vCPU: use --cpus 1") }
    self.endpoint = endpoint
    target = MachineGDBTarget(machine: machine, stopVM: stopVM)
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else {
      throw GDBServerError("--gdb: pipe: \(String(cString: strerror(errno)))")
    }
    wakeRead = fds[0]
    wakeWrite = fds[1]
    _ = fcntl(wakeWrite, F_SETFL, O_NONBLOCK)
    _ = fcntl(wakeRead, F_SETFL, O_NONBLOCK)
    do {
      (listenFD, boundPort) = try GDBServer.listen(endpoint)
    } catch {
      close(wakeRead)
      close(wakeWrite)
      throw error
    }
  }

  deinit {
    close(listenFD)
    close(wakeRead)
    close(wakeWrite)
    if case .unix(let p) = endpoint { unlink(p) }
  }

  private static func listen(_ e: GDBEndpoint) throws -> (Int32, UInt16) {
    func fail(_ what: String, _ fd: Int32) -> GDBServerError {
      let why = String(cString: strerror(errno))
      if fd >= 0 { close(fd) }
      return GDBServerError("--gdb \(e): \(what): \(why)")
    }
    switch e {
    case .tcp(let host, let port):
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { throw fail("socket", fd) }
      var one: Int32 = 1
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
      var a = sockaddr_in()
      a.sin_family = sa_family_t(AF_INET)
      a.sin_port = port.bigEndian
      inet_pton(AF_INET, host, &a.sin_addr)
      let ok = withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
      }
      guard ok else { throw fail("bind", fd) }
      guard Glibc.listen(fd, 1) == 0 else { throw fail("listen", fd) }
      var got = sockaddr_in()
      var len = socklen_t(MemoryLayout<sockaddr_in>.size)
      _ = withUnsafeMutablePointer(to: &got) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
      }
      return (fd, UInt16(bigEndian: got.sin_port))
    case .unix(let path):
      // A stale socket from an earlier run is replaced; any other file is not touched.
      var st = stat()
      if lstat(path, &st) == 0 {
        guard st.st_mode & S_IFMT == S_IFSOCK else {
          throw GDBServerError("--gdb \(e): \(path) exists and is not a socket")
        }
        unlink(path)
      }
      let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { throw fail("socket", fd) }
      var a = sockaddr_un()
      a.sun_family = sa_family_t(AF_UNIX)
      withUnsafeMutableBytes(of: &a.sun_path) { p in
        for (i, b) in path.utf8.enumerated() { p[i] = b }
      }
      let ok = withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
        }
      }
      guard ok else { throw fail("bind", fd) }
      guard Glibc.listen(fd, 1) == 0 else { throw fail("listen", fd) }
      return (fd, 0)
    }
  }

  /// `--gdb-wait`: the guest stops before its first instruction, until gdb continues.
  public func stopAtFirstInstruction() throws {
    let m = target.machine()
    let rip = try m.cpu.getState().general.rip
    try m.cpu.setDebugSettings(DebugSettings(breakpoints: [rip]))
  }

  public func start() {
    target.machine().debugStops.onStop = { [wakeWrite] in GDBServer.ring(wakeWrite) }
    let t = Thread { [self] in serve() }
    t.name = "gdb"
    thread = t
    t.start()
  }

  /// The VM ended: a waiting gdb gets its exit reply (waits up to a second for it to go out).
  public func machineEnded(_ outcome: MachineOutcome) {
    target.ended(outcome.exitStatus)
    GDBServer.ring(wakeWrite)
    lock.lock()
    let deadline = Date().addingTimeInterval(1)
    while !exitReported && target.hasClient && lock.wait(until: deadline) {}
    closing = true
    lock.unlock()
    GDBServer.ring(wakeWrite)
    // The process usually exits next, without deinit: remove the socket file now.
    if case .unix(let p) = endpoint { unlink(p) }
  }

  private static func ring(_ fd: Int32) {
    var b: UInt8 = 1
    _ = write(fd, &b, 1)
  }

  private func drainWake() {
    var buf = [UInt8](repeating: 0, count: 64)
    while read(wakeRead, &buf, buf.count) > 0 {}
  }

  private func acceptClient() -> Int32 {
    let fd = accept(listenFD, nil, nil)
    if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return fd
  }

  private var isClosing: Bool { lock.withLock { closing } }

  private func serve() {
    while !isClosing {
      var fds = [
        pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
        pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
      ]
      guard poll(&fds, 2, -1) >= 0 || errno == EINTR else { return }
      drainWake()
      if fds[0].revents & Int16(POLLIN) != 0 {
        let c = acceptClient()
        if c >= 0 { session(c) }
      }
    }
  }

  /// One client, until it detaches, kills, disconnects or the VM ends.
  private func session(_ fd: Int32) {
    defer { close(fd) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)  // a client that stops reading cannot block us forever
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    var broken = false
    let stub = GDBStub(target: target) { bytes in
      guard !broken else { return }
      var off = 0
      while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes {
          send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
          broken = true
          return
        }
        off += n
      }
    }
    target.hasClient = true
    defer { target.hasClient = false }
    stub.attach()
    var buf = [UInt8](repeating: 0, count: 4096)
    while !broken && !stub.finished {
      var fds = [
        pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
        pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
      ]
      guard poll(&fds, 3, -1) >= 0 || errno == EINTR else { break }
      drainWake()
      if fds[2].revents & Int16(POLLIN) != 0 {
        // One client at a time: others are closed at once.
        let extra = acceptClient()
        if extra >= 0 { close(extra) }
      }
      if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        stub.receive(Array(buf[0..<n]))
      }
      stub.poll()
      if target.exitStatus != nil && !stub.running {
        lock.withLock {
          exitReported = true
          lock.broadcast()
        }
        if stub.finished || isClosing { break }
      }
      if isClosing { break }
    }
    stub.disconnected()
  }
}

/// `GDBTarget` over the current `Machine` (the session's, which changes on reboot).
final class MachineGDBTarget: GDBTarget {
  let machine: () -> Machine
  private let stopVM: (MachineOutcome) -> Void
  private let lock = NSLock()
  private var status: Int32?
  private var client = false

  init(machine: @escaping () -> Machine, stopVM: @escaping (MachineOutcome) -> Void) {
    self.machine = machine
    self.stopVM = stopVM
  }

  var hasClient: Bool {
    get { lock.withLock { client } }
    set { lock.withLock { client = newValue } }
  }

  func ended(_ s: Int32) { lock.withLock { status = s } }
  var exitStatus: Int32? { lock.withLock { status } }

  func stop() -> Bool {
    while exitStatus == nil {
      if machine().pause() { return true }
      usleep(2000)  // the run loop has not started yet (or is between boots)
    }
    return false
  }

  func takeStop() -> DebugStop? { machine().debugStops.take() }

  func registers() throws -> GDBRegisterFile {
    let m = machine()
    return try m.onVCPUThread {
      GDBRegisterFile(state: try m.cpu.getState(), fx: m.cpu.debugFXImage)
    }
  }

  /// Only what `GDBRegisters.set` changes: general registers, RIP, RFLAGS, FS/GS bases.
  func setRegisters(_ r: GDBRegisterFile) throws {
    let m = machine()
    try m.onVCPUThread {
      var s = try m.cpu.getState()
      s.general = r.state.general
      s.special.fs.base = r.state.special.fs.base
      s.special.gs.base = r.state.special.gs.base
      try m.cpu.setState(s)
    }
  }

  func readMemory(_ address: UInt64, count: Int) throws -> [UInt8] {
    let m = machine()
    return try m.onVCPUThread { try m.debugRead(address, count: count) }
  }

  func writeMemory(_ address: UInt64, _ bytes: [UInt8]) throws -> Bool {
    let m = machine()
    return try m.onVCPUThread { try m.debugWrite(address, bytes) }
  }

  func resume(_ settings: DebugSettings) throws {
    let m = machine()
    try m.onVCPUThread { try m.cpu.setDebugSettings(settings) }
    m.resume()
  }

  func kill() { stopVM(.signal(SIGKILL)) }
}
