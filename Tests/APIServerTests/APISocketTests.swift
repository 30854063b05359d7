import Foundation
import TestSupport
import VMM
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `swiftvmm run --api-sock PATH` driven the way Firecracker's getting-started
/// guide drives Firecracker: `curl --unix-socket`.
final class APISocketTests: XCTestCase {
  var socket = ""
  var vmm: Process!
  var stdinPipe = Pipe()
  let output = OutputCollector()

  final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) {
      lock.lock()
      data.append(d)
      lock.unlock()
    }
    var text: String {
      lock.lock()
      defer { lock.unlock() }
      return String(decoding: data, as: UTF8.self)
    }
  }

  override func setUpWithError() throws {
    let binary = GuestImages.swiftvmmBinary
    guard FileManager.default.isExecutableFile(atPath: binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(binary)")
    }
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
      throw XCTSkip("needs curl (.ci/run installs it)")
    }
    socket = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString.prefix(8)).sock"
    vmm = try startVMM(socket: socket, output: output, input: stdinPipe)
  }

  override func tearDown() {
    if let vmm, vmm.isRunning { vmm.terminate() }
    try? FileManager.default.removeItem(atPath: socket)
  }

  /// One request with curl: status and body.
  func curl(_ method: String, _ path: String, _ body: String? = nil, file: String? = nil) throws
    -> (status: Int, body: String)
  {
    var args = [
      "-s", "--unix-socket", socket, "-X", method, "http://localhost\(path)",
      "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
    ]
    if let body { args += ["--data", body] }
    if let file { args += ["--data-binary", "@\(file)"] }
    let r = try GuestImages.run("/usr/bin/curl", args, timeout: 30)
    let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
    return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
  }

  func waitForOutput(_ text: String, timeout: Double = 60) -> Bool {
    let deadline = Date() + timeout
    while Date() < deadline {
      if output.text.contains(text) { return true }
      usleep(20_000)
    }
    return false
  }

  func testGettingStartedSequence() throws {
    let kernel = try GuestImages.path("echo.elf")
    let disk = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: disk, contents: Data(count: 1 << 20))
    defer { try? FileManager.default.removeItem(atPath: disk) }

    var r = try curl("GET", "/")
    XCTAssertEqual(r.status, 200, r.body)
    XCTAssertTrue(r.body.contains(#""state":"Not started""#), r.body)
    r = try curl(
      "PUT", "/boot-source", #"{"kernel_image_path": "\#(kernel)", "boot_args": "console=ttyS0"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64}"#)
    XCTAssertEqual(r.status, 204, r.body)
    // The interpreter counts instructions, which shows a pause below.
    r = try curl("PUT", "/swiftvmm", #"{"engine": "interpreter"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl(
      "PUT", "/drives/rootfs",
      #"{"drive_id": "rootfs", "path_on_host": "\#(disk)", "is_root_device": true, "is_read_only": false}"#
    )
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("GET", "/machine-config")
    XCTAssertTrue(r.body.contains(#""mem_size_mib":64"#), r.body)
    r = try curl("PUT", "/actions", #"{"action_type": "InstanceStart"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    XCTAssertTrue(waitForOutput("echo ready"), output.text)
    r = try curl("GET", "/")
    XCTAssertTrue(r.body.contains(#""state":"Running""#), r.body)

    // Requests that do not apply, or are malformed, get 400 with a reason.
    r = try curl(
      "PUT", "/drives/rootfs",
      #"{"drive_id": "rootfs", "path_on_host": "\#(disk)", "is_root_device": true}"#)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("not supported after starting"), r.body)
    r = try curl("PUT", "/machine-config", #"{"vcpu_count": "#)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("fault_message"), r.body)
    r = try curl("GET", "/no/such/path")
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("Invalid request method and/or path"), r.body)
    r = try curl("POST", "/actions", "{}")
    XCTAssertEqual(r.status, 400, r.body)
    let big = NSTemporaryDirectory() + "swiftvmm-api-big-\(UUID().uuidString).json"
    FileManager.default.createFile(atPath: big, contents: Data(repeating: 0x20, count: 100_000))
    defer { try? FileManager.default.removeItem(atPath: big) }
    r = try curl("PUT", "/machine-config", file: big)
    XCTAssertEqual(r.status, 413, r.body)

    // Garbage and a client that leaves mid-request only lose their own connection.
    XCTAssertTrue(try rawExchange(Array("NOT HTTP AT ALL\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400"))
    _ = try rawExchange(
      Array("PUT /machine-config HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"vcpu".utf8),
      readReply: false)
    r = try curl("GET", "/")
    XCTAssertEqual(r.status, 200, r.body)
    XCTAssertTrue(r.body.contains(#""state":"Running""#), r.body)

    // This guest never enables its keyboard: the keys cannot be delivered, and it says so.
    r = try curl("PUT", "/actions", #"{"action_type": "SendCtrlAltDel"}"#)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("has not enabled its i8042 keyboard"), r.body)

    // Pause: the guest's instruction count stands still until it resumes.
    let metrics = NSTemporaryDirectory() + "swiftvmm-api-metrics-\(UUID().uuidString).json"
    defer { try? FileManager.default.removeItem(atPath: metrics) }
    r = try curl("PUT", "/metrics", #"{"metrics_path": "\#(metrics)"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PATCH", "/vm", #"{"state": "Paused"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("GET", "/")
    XCTAssertTrue(r.body.contains(#""state":"Paused""#), r.body)
    func instructions() throws -> Int64? {
      XCTAssertEqual(try curl("PUT", "/actions", #"{"action_type": "FlushMetrics"}"#).status, 204)
      let last = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").last!
      guard case .object(let o) = try JSONValue.parse(Array(last.utf8)),
        case .integer(let n) = o["instructions"] ?? .null
      else { return nil }
      return n
    }
    let paused = try instructions()
    XCTAssertNotNil(paused, (try? String(contentsOfFile: metrics, encoding: .utf8)) ?? "")
    usleep(200_000)
    XCTAssertEqual(try instructions(), paused, "a paused guest retires no instructions")
    // A paused machine with a virtio disk snapshots (virtio-blk's queues are saved).
    let snap = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString).snap"
    defer { try? FileManager.default.removeItem(atPath: snap) }
    r = try curl(
      "PUT", "/snapshot/create", #"{"snapshot_path": "\#(snap)", "mem_file_path": "/tmp/y"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    XCTAssertTrue(FileManager.default.fileExists(atPath: snap), "no snapshot file written")
    r = try curl("PATCH", "/vm", #"{"state": "Resumed"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    usleep(200_000)
    XCTAssertGreaterThan(try instructions() ?? 0, paused ?? .max)
    r = try curl(
      "PUT", "/snapshot/create", #"{"snapshot_path": "/tmp/x", "mem_file_path": "/tmp/y"}"#)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("must be paused"), r.body)

    // The guest still runs and answers: '~' ends it with status (0 << 1) | 1.
    stdinPipe.fileHandleForWriting.write(Data("~".utf8))
    try waitForExit(vmm)
    XCTAssertEqual(vmm.terminationStatus, 1, output.text)
    XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed at exit")
  }

  func testSnapshotRequestsOfARunningAndAPausedVM() throws {
    let kernel = try GuestImages.path("echo.elf")
    var r = try curl("PUT", "/boot-source", #"{"kernel_image_path": "\#(kernel)"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/swiftvmm", #"{"engine": "interpreter"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/actions", #"{"action_type": "InstanceStart"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    XCTAssertTrue(waitForOutput("echo ready"), output.text)
    let snapshot = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString).snap"
    defer { try? FileManager.default.removeItem(atPath: snapshot) }
    let body =
      #"{"snapshot_path": "\#(snapshot)", "mem_file_path": "/tmp/unused", "snapshot_type": "Full"}"#
    r = try curl("PUT", "/snapshot/create", body)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: snapshot), "nothing written while running")
    XCTAssertEqual(try curl("PATCH", "/vm", #"{"state": "Paused"}"#).status, 204)
    r = try curl("PUT", "/snapshot/create", body)
    // This guest polls the UART, so the pause lands between an IN's exit and its
    // completion, which the snapshot format cannot hold yet: a clean 400 with the reason,
    // no file, and the VM runs on.
    if r.status == 400 {
      XCTAssertTrue(r.body.contains("middle of an I/O instruction"), r.body)
      XCTAssertFalse(FileManager.default.fileExists(atPath: snapshot), "never half-written")
    } else {
      XCTAssertEqual(r.status, 204, r.body)
      let size = (try? FileManager.default.attributesOfItem(atPath: snapshot)[.size] as? Int) ?? 0
      XCTAssertGreaterThan(size, 32 << 10, "the snapshot holds the machine")
    }
    XCTAssertEqual(try curl("PATCH", "/vm", #"{"state": "Resumed"}"#).status, 204)
    stdinPipe.fileHandleForWriting.write(Data("~".utf8))
    try waitForExit(vmm)
    XCTAssertEqual(vmm.terminationStatus, 1, output.text)
  }

  /// Firecracker's snapshot hand-over: create in one VMM process, `PUT /snapshot/load`
  /// into a new `run --api-sock` process, where the guest waits paused and then finishes
  /// with the same result as the process it came from.
  func testSnapshotLoadsIntoANewProcess() throws {
    let kernel = try GuestImages.path("bench_loop.elf")
    var r = try curl(
      "PUT", "/boot-source",
      #"{"kernel_image_path": "\#(kernel)", "boot_args": "bench_loop.elf div=\#(Self.loopDivisor)"}"#
    )
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/swiftvmm", #"{"engine": "interpreter"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("PUT", "/actions", #"{"action_type": "InstanceStart"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    usleep(100_000)
    r = try curl("PATCH", "/vm", #"{"state": "Paused"}"#)
    guard r.status == 204 else {
      return XCTFail("the guest ended before the pause: \(r.body) \(output.text)")
    }
    let snap = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString).snap"
    let mem = snap + ".mem"
    defer { try? FileManager.default.removeItem(atPath: snap) }
    r = try curl(
      "PUT", "/snapshot/create", #"{"snapshot_path": "\#(snap)", "mem_file_path": "\#(mem)"}"#)
    XCTAssertEqual(r.status, 204, r.body)
    XCTAssertFalse(FileManager.default.fileExists(atPath: mem), "memory is in the snapshot file")
    XCTAssertEqual(try curl("PATCH", "/vm", #"{"state": "Resumed"}"#).status, 204)
    try waitForExit(vmm)
    XCTAssertEqual(vmm.terminationStatus, 1, output.text)
    let result = try XCTUnwrap(
      output.text.split(separator: "\n").first { $0.hasPrefix("bench loop: result=") },
      output.text)

    // A new VMM process: nothing configured, the snapshot loads paused.
    let firstOutput = output.text
    socket = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString.prefix(8)).sock"
    let second = OutputCollector()
    vmm = try startVMM(socket: socket, output: second)
    r = try curl(
      "PUT", "/snapshot/load", #"{"snapshot_path": "/nonexistent.snap", "mem_file_path": "/m"}"#)
    XCTAssertEqual(r.status, 400, r.body)
    XCTAssertTrue(r.body.contains("nonexistent.snap"), r.body)
    r = try curl(
      "PUT", "/snapshot/load",
      #"{"snapshot_path": "\#(snap)", "mem_backend": {"backend_path": "\#(mem)", "backend_type": "File"}}"#
    )
    XCTAssertEqual(r.status, 204, r.body)
    r = try curl("GET", "/")
    XCTAssertTrue(r.body.contains(#""state":"Paused""#), r.body)
    usleep(300_000)
    XCTAssertFalse(
      second.text.contains("bench loop"), "a paused guest does not run: \(second.text)")
    XCTAssertEqual(try curl("PATCH", "/vm", #"{"state": "Resumed"}"#).status, 204)
    try waitForExit(vmm)
    XCTAssertEqual(vmm.terminationStatus, 1, second.text)
    XCTAssertTrue(second.text.contains(result), "first: \(firstOutput)\nsecond: \(second.text)")
  }

  /// bench_loop's divisor: its work is proportional to 1/div. Release engines are fast
  /// enough that div=500 ended within 0.3 s, before the test's pause.
  #if DEBUG
    static let loopDivisor = 500
  #else
    static let loopDivisor = 20
  #endif

  /// Waits for the VMM to exit; a VMM still running after `seconds` is killed and the
  /// test fails, instead of hanging the suite.
  func waitForExit(_ p: Process, seconds: Double = 300) throws {
    let deadline = Date() + seconds
    while p.isRunning {
      guard Date() < deadline else {
        p.terminate()
        p.waitUntilExit()
        XCTFail("the VMM did not exit within \(seconds) s")
        return
      }
      usleep(20_000)
    }
  }

  /// Starts `swiftvmm run --api-sock socket` and waits for its socket.
  func startVMM(socket: String, output: OutputCollector, input: Pipe = Pipe()) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = ["run", "--api-sock", socket]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    p.standardInput = input
    out.fileHandleForReading.readabilityHandler = { h in output.append(h.availableData) }
    try p.run()
    let deadline = Date() + 30
    while !FileManager.default.fileExists(atPath: socket) {
      guard Date() < deadline, p.isRunning else {
        throw XCTSkip("the API socket never appeared: \(output.text)")
      }
      usleep(10_000)
    }
    return p
  }

  /// The figure the issue asks for: `GET /` latency over a 1,000-request loop, on one
  /// kept-alive connection and with a new connection each time. Printed, never asserted.
  func testGETLatencyFigure() throws {
    let request = Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
    func percentile(_ t: [Double], _ p: Double) -> Double {
      t.sorted()[Int(Double(t.count - 1) * p)]
    }
    let fd = try connectSocket()
    defer { close(fd) }
    var kept: [Double] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    for _ in 0..<1000 {
      let start = DispatchTime.now().uptimeNanoseconds
      _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      var reply: [UInt8] = []
      // The body is one JSON object: the reply is complete at its closing brace.
      while reply.last != UInt8(ascii: "}") {
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return XCTFail("connection closed") }
        reply += buf[0..<n]
      }
      kept.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
      XCTAssertTrue(reply.starts(with: Array("HTTP/1.1 200".utf8)))
    }
    var fresh: [Double] = []
    let closing = Array("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
    for _ in 0..<1000 {
      let start = DispatchTime.now().uptimeNanoseconds
      let reply = try rawExchange(closing)
      fresh.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
      XCTAssertTrue(reply.hasPrefix("HTTP/1.1 200"))
    }
    print(
      String(
        format:
          "API GET / latency, 1000 requests: kept-alive median %.0f us, p99 %.0f us; new connection each median %.0f us, p99 %.0f us",
        percentile(kept, 0.5), percentile(kept, 0.99), percentile(fresh, 0.5),
        percentile(fresh, 0.99)))
  }

  func connectSocket() throws -> Int32 {
    let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw XCTSkip("socket() failed") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
      for (i, b) in socket.utf8.prefix(p.count - 1).enumerated() { p[i] = b }
    }
    let ok = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    XCTAssertEqual(ok, 0)
    return fd
  }

  /// Writes `bytes` on a fresh connection and returns what comes back before close.
  func rawExchange(_ bytes: [UInt8], readReply: Bool = true) throws -> String {
    let fd = try connectSocket()
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard readReply else { return "" }
    var reply: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = read(fd, &buf, buf.count)
      if n <= 0 { break }
      reply += buf[0..<n]
    }
    return String(decoding: reply, as: UTF8.self)
  }
}
