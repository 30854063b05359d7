import Foundation
import Logging
import TestSupport
import VMM
import XCTest

@testable import APIServer

/// The API's state machine without a socket: routes, statuses and fault messages.
final class VMControllerTests: XCTestCase {
  var started: [MachineConfig] = []

  func controller() -> VMController {
    VMController { [unowned self] config in
      started.append(config)
      return try VMSession(config: config, console: ConsoleOutput(capturing: ()))
    }
  }

  func put(_ c: VMController, _ path: String, _ body: String, method: String = "PUT")
    -> APIResponse
  {
    c.handle(APIRequest(method: method, path: path, body: Array(body.utf8)))
  }

  func testConfigureThenStart() throws {
    let c = controller()
    XCTAssertEqual(
      c.handle(APIRequest(method: "GET", path: "/")),
      .ok(
        .object([
          "app_name": .string("SwiftVMM"), "id": .string("anonymous-instance"),
          "state": .string("Not started"), "vmm_version": .string(VMController.version),
        ])))
    // Firecracker's defaults before any PUT.
    let defaults = c.handle(APIRequest(method: "GET", path: "/machine-config"))
    XCTAssertEqual(defaults.status, 200)
    guard case .object(let m) = defaults.body else { return XCTFail("\(defaults)") }
    XCTAssertEqual(m["vcpu_count"], .integer(1))
    XCTAssertEqual(m["mem_size_mib"], .integer(128))

    let kernel = try GuestImages.path("hello.elf")
    XCTAssertEqual(
      put(c, "/boot-source", #"{"kernel_image_path": "\#(kernel)", "boot_args": "x=1"}"#),
      .noContent)
    XCTAssertEqual(put(c, "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#), .noContent)
    let disk = NSTemporaryDirectory() + "swiftvmm-api-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: disk, contents: Data(count: 4096))
    defer { try? FileManager.default.removeItem(atPath: disk) }
    XCTAssertEqual(
      put(
        c, "/drives/rootfs",
        #"{"drive_id": "rootfs", "path_on_host": "\#(disk)", "is_root_device": true, "is_read_only": false}"#
      ), .noContent)
    let vmConfig = c.handle(APIRequest(method: "GET", path: "/vm/config"))
    XCTAssertEqual(try VMSpec.parse(configFile: Array(vmConfig.body!.text.utf8)), c.spec)

    XCTAssertEqual(put(c, "/actions", #"{"action_type": "InstanceStart"}"#), .noContent)
    XCTAssertEqual(started.count, 1)
    XCTAssertEqual(started.first?.memorySize, 32 << 20)
    XCTAssertEqual(started.first?.commandLine, "x=1 root=/dev/vda rw")
    XCTAssertEqual(c.state, .running)
    // Requests that no longer apply are refused with a reason.
    let late = put(
      c, "/drives/rootfs",
      #"{"drive_id": "rootfs", "path_on_host": "\#(disk)", "is_root_device": true}"#)
    XCTAssertEqual(late.status, 400)
    XCTAssertEqual(
      late.faultMessage, "The requested operation is not supported after starting the microVM.")
    XCTAssertEqual(
      put(c, "/actions", #"{"action_type": "InstanceStart"}"#).faultMessage,
      "The microVM is already running.")
  }

  func testBadRequestsAreFaultsWithReasons() {
    let c = controller()
    func fault(_ r: APIResponse) -> String {
      XCTAssertEqual(r.status, 400, "\(r)")
      return r.faultMessage ?? "no fault_message"
    }
    XCTAssertEqual(
      fault(c.handle(APIRequest(method: "GET", path: "/nope"))),
      "Invalid request method and/or path: GET /nope.")
    XCTAssertEqual(
      fault(c.handle(APIRequest(method: "POST", path: "/actions"))),
      "Invalid request method POST for /actions: it takes PUT.")
    XCTAssertEqual(
      fault(c.handle(APIRequest(method: "DELETE", path: "/machine-config"))),
      "Invalid request method DELETE for /machine-config: it takes GET, PUT.")
    XCTAssertTrue(fault(put(c, "/machine-config", "{\"vcpu_count\": ")).hasPrefix("malformed JSON"))
    XCTAssertEqual(fault(put(c, "/machine-config", "")), "the request needs a JSON body")
    XCTAssertEqual(
      fault(put(c, "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32, "x": 1}"#)),
      "x: unknown key")
    XCTAssertEqual(fault(put(c, "/boot-source", #"[]"#)), "expected an object, found an array")
    XCTAssertEqual(
      fault(
        put(c, "/drives/a", #"{"drive_id": "b", "path_on_host": "/x", "is_root_device": false}"#)),
      "path_on_host: --disk /x: no such file")
    XCTAssertEqual(
      fault(put(c, "/actions", #"{"action_type": "Reboot"}"#)),
      "action_type: unknown action 'Reboot'; choose InstanceStart, SendCtrlAltDel or FlushMetrics")
    XCTAssertEqual(
      fault(put(c, "/actions", #"{"action_type": "InstanceStart"}"#)),
      "Cannot start the microVM: boot-source: is required (the kernel to boot)")
    XCTAssertEqual(c.state, .notStarted)
    XCTAssertEqual(
      fault(put(c, "/actions", #"{"action_type": "FlushMetrics"}"#)),
      "The metrics system is not initialized: PUT /metrics first.")
    XCTAssertEqual(
      fault(put(c, "/vm", #"{"state": "Paused"}"#, method: "PATCH")), "The microVM is not running.")
    XCTAssertEqual(
      fault(put(c, "/vm", #"{"state": "Sleeping"}"#, method: "PATCH")),
      "state: 'Sleeping'; choose Paused or Resumed")
    XCTAssertEqual(fault(put(c, "/snapshot/create", #"{}"#)), "snapshot_path: is required")
    XCTAssertEqual(
      fault(put(c, "/snapshot/create", #"{"snapshot_path": "/tmp/s"}"#)),
      "The microVM must be paused to create a snapshot: PATCH /vm Paused first.")
    XCTAssertEqual(
      fault(put(c, "/snapshot/create", #"{"snapshot_path": "/tmp/s", "snapshot_type": "Diff"}"#)),
      "snapshot_type: 'Diff'; only Full snapshots are supported")
    XCTAssertEqual(
      fault(put(c, "/snapshot/load", #"{"snapshot_path": "/tmp/s"}"#)),
      "mem_backend: is required (or the deprecated mem_file_path)")
    XCTAssertTrue(
      fault(put(c, "/metrics", #"{"metrics_path": "/nonexistent/dir/m.json"}"#)).hasPrefix(
        "metrics_path: cannot open"))
  }

  func testFlushMetricsAppendsOneJSONLine() throws {
    let c = controller()
    let path = NSTemporaryDirectory() + "swiftvmm-metrics-\(UUID().uuidString).json"
    defer { try? FileManager.default.removeItem(atPath: path) }
    XCTAssertEqual(put(c, "/metrics", #"{"metrics_path": "\#(path)"}"#), .noContent)
    XCTAssertEqual(
      put(c, "/metrics", #"{"metrics_path": "\#(path)"}"#).faultMessage,
      "Reinitialization of metrics not allowed.")
    XCTAssertEqual(put(c, "/actions", #"{"action_type": "FlushMetrics"}"#), .noContent)
    XCTAssertEqual(put(c, "/actions", #"{"action_type": "FlushMetrics"}"#), .noContent)
    let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    guard case .object(let o) = try JSONValue.parse(Array(lines[0].utf8)) else { return XCTFail() }
    XCTAssertEqual(o["state"], .string("Not started"))
  }

  func testLoggerMovesTheLogAndSetsItsLevel() throws {
    let sink = LogSink()
    let c = VMController(logSink: sink) { _ in throw JSONFieldError("", "not started in this test")
    }
    var log = Logger(label: "swiftvmm") { sink.handler(label: $0) }
    log.logLevel = .warning
    let path = NSTemporaryDirectory() + "swiftvmm-log-\(UUID().uuidString).log"
    defer { try? FileManager.default.removeItem(atPath: path) }
    XCTAssertEqual(
      put(c, "/logger", #"{"log_path": "\#(path)", "level": "Info", "show_level": true}"#),
      .noContent)
    XCTAssertEqual(sink.level, .info)
    log.info("hello from the VMM")
    log.debug("not at this level")
    let text = try String(contentsOfFile: path, encoding: .utf8)
    XCTAssertTrue(text.hasSuffix(" info swiftvmm: [APIServerTests] hello from the VMM\n"), text)
    XCTAssertFalse(text.contains("not at this level"), text)

    XCTAssertEqual(
      put(c, "/logger", #"{"level": "Loud"}"#).faultMessage,
      "level: 'Loud'; choose Error, Warning, Info, Debug, Trace or Off")
    XCTAssertEqual(
      put(c, "/logger", #"{"module": "vmm"}"#).faultMessage,
      "module: filtering by module is not supported")
    XCTAssertTrue(
      put(c, "/logger", #"{"log_path": "/nonexistent/dir/x.log"}"#).faultMessage?.hasPrefix(
        "log_path: cannot open") ?? false)
  }

  /// `PUT /snapshot/load`: Firecracker's body and rules, and a real restore that
  /// starts paused unless `resume_vm`.
  func testSnapshotLoad() throws {
    var loads: [VMController.SnapshotLoad] = []
    func loading() -> VMController {
      VMController(
        loader: { load in
          loads.append(load)
          let m = try Machine(restoring: load.snapshotPath, console: ConsoleOutput(capturing: ()))
          if !load.resume { m.startPaused() }
          return VMSession(machine: m, console: ConsoleOutput(capturing: ()))
        },
        starter: { _ in throw JSONFieldError("", "not started in this test") })
    }
    let c = loading()
    func fault(_ body: String) -> String {
      let r = put(c, "/snapshot/load", body)
      XCTAssertEqual(r.status, 400, "\(r)")
      return r.faultMessage ?? "no fault_message"
    }
    XCTAssertEqual(fault(#"{"mem_file_path": "/m"}"#), "snapshot_path: is required")
    XCTAssertEqual(
      fault(
        #"{"snapshot_path": "/s", "mem_file_path": "/m", "mem_backend": {"backend_path": "/m", "backend_type": "File"}}"#
      ), "mem_file_path: is not allowed together with mem_backend")
    XCTAssertEqual(
      fault(
        #"{"snapshot_path": "/s", "mem_backend": {"backend_path": "/m", "backend_type": "Uffd"}}"#),
      "mem_backend.backend_type: 'Uffd'; only File is supported (no Uffd)")
    XCTAssertEqual(
      fault(#"{"snapshot_path": "/s", "mem_backend": {"backend_type": "File"}}"#),
      "mem_backend.backend_path: is required")
    XCTAssertEqual(
      fault(#"{"snapshot_path": "/s", "mem_file_path": "/m", "enable_diff_snapshots": true}"#),
      "enable_diff_snapshots: diff snapshots are not supported")
    XCTAssertEqual(
      fault(#"{"snapshot_path": "/s", "mem_file_path": "/m", "resume": true}"#),
      "resume: unknown key")
    XCTAssertEqual(
      fault(#"{"snapshot_path": "/s", "mem_file_path": "/m", "swiftvmm": {"engine": "qemu"}}"#),
      "swiftvmm.engine: 'qemu'; choose kvm, interpreter or translator")
    XCTAssertEqual(loads, [], "nothing reached the loader")
    // A missing or corrupt file: the file's error, and the VMM stays usable.
    let missing = fault(#"{"snapshot_path": "/nonexistent.snap", "mem_file_path": "/m"}"#)
    XCTAssertTrue(missing.hasPrefix("Cannot load the snapshot: "), missing)
    XCTAssertTrue(missing.contains("/nonexistent.snap"), missing)
    let dir = NSTemporaryDirectory() + "swiftvmm-load-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let junk = dir + "/junk.snap"
    FileManager.default.createFile(atPath: junk, contents: Data(repeating: 7, count: 4096))
    XCTAssertTrue(
      fault(#"{"snapshot_path": "\#(junk)", "mem_file_path": "\#(junk)"}"#).hasPrefix(
        "Cannot load the snapshot: "))
    XCTAssertEqual(c.state, .notStarted)

    // A real snapshot (hello.elf before its first instruction) loads, paused.
    let snap = dir + "/hello.snap"
    var config = MachineConfig(
      kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello.elf", engine: .interpreter)
    config.memorySize = 32 << 20
    try Machine(config: config, console: ConsoleOutput(capturing: ())).saveSnapshot(to: snap)
    XCTAssertEqual(
      put(
        c, "/snapshot/load",
        #"{"snapshot_path": "\#(snap)", "mem_backend": {"backend_path": "\#(snap)", "backend_type": "File"}, "swiftvmm": {"engine": "translator"}}"#
      ), .noContent)
    XCTAssertEqual(loads.last, .init(snapshotPath: snap, engine: .translator, resume: false))
    XCTAssertEqual(c.state, .paused)
    XCTAssertEqual(
      fault(#"{"snapshot_path": "\#(snap)", "mem_file_path": "/m"}"#),
      "Loading a microVM snapshot is not allowed after starting the microVM.")
    XCTAssertEqual(
      put(c, "/actions", #"{"action_type": "InstanceStart"}"#).faultMessage,
      "The microVM is already running.")
    // Paused before its first instruction: run() parks at once until resumed.
    let session = try XCTUnwrap(c.session)
    let ran = DispatchSemaphore(value: 0)
    Thread {
      _ = session.run()
      ran.signal()
    }.start()
    XCTAssertEqual(ran.wait(timeout: .now() + 0.3), .timedOut, "the loaded VM waits while paused")
    XCTAssertEqual(session.machine.statistics()["instructions"] ?? 0, 0)
    XCTAssertEqual(put(c, "/vm", #"{"state": "Resumed"}"#, method: "PATCH"), .noContent)
    XCTAssertEqual(ran.wait(timeout: .now() + 60), .success, "the guest runs to its end")

    // resume_vm runs at once; anything configured first refuses the load.
    let c2 = loading()
    XCTAssertEqual(
      put(
        c2, "/snapshot/load",
        #"{"snapshot_path": "\#(snap)", "mem_file_path": "\#(snap)", "resume_vm": true}"#),
      .noContent)
    XCTAssertEqual(c2.state, .running)
    let c3 = loading()
    XCTAssertEqual(
      put(c3, "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#), .noContent)
    XCTAssertEqual(
      put(c3, "/snapshot/load", #"{"snapshot_path": "\#(snap)", "mem_file_path": "/m"}"#)
        .faultMessage,
      "Loading a microVM snapshot is not allowed after configuring boot-specific resources.")
  }

  /// Hostile requests: random methods, paths and bodies never trap the controller.
  func testNeverTrapOnRandomRequests() {
    let c = controller()
    var rng = SeededRandom(seed: 42)
    let methods = ["GET", "PUT", "PATCH", "POST", "DELETE", ""]
    let paths = [
      "/", "/actions", "/drives/", "/drives/x/y", "//", "/vm", "/machine-config", "/boot-source",
      "/network-interfaces/e", "/snapshot/load",
    ]
    let alphabet = Array(
      "{}[]\":,0123456789truefalsenul -.eaction_typestatekernel_image_pathsnapshot_pathmem_file_path"
        .utf8)
    for _ in 0..<3000 {
      let body = (0..<Int.random(in: 0...48, using: &rng)).map { _ in
        alphabet.randomElement(using: &rng)!
      }
      let r = c.handle(
        APIRequest(
          method: methods.randomElement(using: &rng)!, path: paths.randomElement(using: &rng)!,
          body: body))
      XCTAssertTrue([200, 204, 400].contains(r.status))
    }
  }
}
