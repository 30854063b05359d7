import Foundation
import Logging
import VMM

/// One API request as the server hands it over: method, path (no query) and body.
public struct APIRequest: Sendable {
  public var method: String
  public var path: String
  public var body: [UInt8]
  public init(method: String, path: String, body: [UInt8] = []) {
    self.method = method
    self.path = path
    self.body = body
  }
}

/// An answer: 200 with a JSON body, 204 without, or an error with
/// `{"fault_message": ...}`, as Firecracker's swagger specifies.
public struct APIResponse: Equatable, Sendable {
  public var status: Int
  public var body: JSONValue?

  public static func ok(_ body: JSONValue) -> APIResponse { APIResponse(status: 200, body: body) }
  public static let noContent = APIResponse(status: 204, body: nil)
  public static func fault(_ message: String, status: Int = 400) -> APIResponse {
    APIResponse(status: status, body: .object(["fault_message": .string(message)]))
  }

  public var faultMessage: String? {
    if case .object(let o) = body, case .string(let s) = o["fault_message"] { return s }
    return nil
  }
}

/// The Firecracker API subset SwiftVMM serves, as a state machine over one VM:
/// configuration before `InstanceStart`, control of the running machine after.
/// Knows nothing of HTTP; every call comes from the server's one serial queue.
public final class VMController {
  public enum State: String {
    case notStarted = "Not started"
    case running = "Running"
    case paused = "Paused"
  }

  /// Builds the machine and starts running it elsewhere (the CLI's main thread);
  /// throws a message when the configuration cannot be started.
  public typealias Starter = (MachineConfig) throws -> VMSession

  /// `PUT /snapshot/load`'s request, checked: the snapshot file, the engine to
  /// resume on (nil: the one it was saved on), and whether it runs at once.
  public struct SnapshotLoad: Equatable, Sendable {
    public var snapshotPath: String
    public var engine: EngineKind?
    public var resume: Bool
    public init(snapshotPath: String, engine: EngineKind? = nil, resume: Bool = false) {
      self.snapshotPath = snapshotPath
      self.engine = engine
      self.resume = resume
    }
  }

  /// Restores a snapshot into a new machine that runs elsewhere (the CLI's main
  /// thread), parked before its first instruction (`Machine.startPaused()`) unless
  /// `resume`; throws the file's error, having built nothing that runs.
  public typealias Loader = (SnapshotLoad) throws -> VMSession

  public private(set) var spec: VMSpec
  public private(set) var session: VMSession?
  public private(set) var state: State = .notStarted
  private let starter: Starter
  private let loader: Loader?
  /// A pre-boot PUT succeeded: a snapshot may no longer be loaded (Firecracker's rule).
  public private(set) var configured = false
  /// `PUT /metrics`: where `FlushMetrics` appends one JSON line.
  public private(set) var metricsPath: String?
  public let id: String
  /// Where `PUT /logger` sends the VMM's log.
  private let logSink: LogSink

  public init(
    spec: VMSpec = VMSpec(), id: String = "anonymous-instance", logSink: LogSink = .shared,
    loader: Loader? = nil, starter: @escaping Starter
  ) {
    self.spec = spec
    self.id = id
    self.logSink = logSink
    self.loader = loader
    self.starter = starter
  }

  /// A VM the command line already started (`--kernel` or `--config` with `--api-sock`).
  public func attach(_ session: VMSession, spec: VMSpec? = nil) {
    if let spec { self.spec = spec }
    self.session = session
    state = .running
  }

  /// Each path the API serves (`*` is an ID) and its methods.
  public static let routes: [String: [String]] = [
    "/": ["GET"], "/machine-config": ["GET", "PUT"], "/vm/config": ["GET"],
    "/boot-source": ["PUT"], "/drives/*": ["PUT"], "/network-interfaces/*": ["PUT"],
    "/actions": ["PUT"], "/vm": ["PATCH"], "/metrics": ["PUT"], "/snapshot/create": ["PUT"],
    "/snapshot/load": ["PUT"], "/swiftvmm": ["PUT"], "/logger": ["PUT"],
  ]

  public func handle(_ r: APIRequest) -> APIResponse {
    let parts = r.path.split(separator: "/").map(String.init)
    let id = parts.count == 2 ? parts[1] : ""
    let route =
      parts.count == 2 && ["drives", "network-interfaces"].contains(parts[0])
      ? "/\(parts[0])/*" : "/" + parts.joined(separator: "/")
    switch (r.method, route) {
    case ("GET", "/"): return .ok(instanceInfo)
    case ("GET", "/machine-config"): return .ok(spec.machineConfigJSON)
    case ("GET", "/vm/config"): return .ok(spec.json)
    case ("PUT", "/boot-source"):
      return configure(r.body) { spec, v in
        spec.bootSource = try VMSpec.parseBootSource(v, path: "")
      }
    case ("PUT", "/machine-config"):
      return configure(r.body) { spec, v in
        spec.machine = try VMSpec.parseMachineConfig(v, path: "")
      }
    case ("PUT", "/drives/*"):
      return configure(r.body) { spec, v in
        let d = try VMSpec.parseDrive(v, path: "")
        guard d.driveID == id else {
          throw JSONFieldError("drive_id", "'\(d.driveID)' does not match the path's '\(id)'")
        }
        try spec.put(drive: d, path: "")
      }
    case ("PUT", "/network-interfaces/*"):
      return configure(r.body) { spec, v in
        let n = try VMSpec.parseNetworkInterface(v, path: "")
        guard n.ifaceID == id else {
          throw JSONFieldError("iface_id", "'\(n.ifaceID)' does not match the path's '\(id)'")
        }
        try spec.put(interface: n, path: "")
      }
    case ("PUT", "/swiftvmm"):
      // SwiftVMM's own settings (engine, MMU mode, CPUID policy): the config file's section.
      return configure(r.body) { spec, v in
        spec.swiftvmm = try VMSpec.parseExtensions(v, path: "")
      }
    case ("PUT", "/actions"): return action(r.body)
    case ("PATCH", "/vm"): return changeState(r.body)
    case ("PUT", "/metrics"): return setMetrics(r.body)
    case ("PUT", "/logger"): return setLogger(r.body)
    case ("PUT", "/snapshot/create"): return createSnapshot(r.body)
    case ("PUT", "/snapshot/load"): return loadSnapshot(r.body)
    default:
      if let methods = VMController.routes[route] {
        return .fault(
          "Invalid request method \(r.method) for \(r.path): it takes \(methods.joined(separator: ", "))."
        )
      }
      return .fault("Invalid request method and/or path: \(r.method) \(r.path).")
    }
  }

  // MARK: Endpoints

  var instanceInfo: JSONValue {
    .object([
      "app_name": .string("SwiftVMM"), "id": .string(id), "state": .string(state.rawValue),
      "vmm_version": .string(VMController.version),
    ])
  }

  public static let version = "0.1.0"

  /// A pre-boot change: the body is one section of the config file.
  private func configure(
    _ body: [UInt8], _ change: (inout VMSpec, JSONValue) throws -> Void
  ) -> APIResponse {
    guard state == .notStarted else {
      return .fault("The requested operation is not supported after starting the microVM.")
    }
    do {
      let v = try parseBody(body)
      var s = spec
      try change(&s, v)
      spec = s
      configured = true
      return .noContent
    } catch {
      return .fault("\(error)")
    }
  }

  private func parseBody(_ body: [UInt8]) throws(JSONFieldError) -> JSONValue {
    guard !body.isEmpty else { throw JSONFieldError("", "the request needs a JSON body") }
    do { return try JSONValue.parse(body) } catch { throw JSONFieldError("", error.description) }
  }

  private func action(_ body: [UInt8]) -> APIResponse {
    let type: String
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      type = try r.require("action_type", try r.string("action_type"))
      try r.finish()
    } catch {
      return .fault(error.description)
    }
    switch type {
    case "InstanceStart":
      guard state == .notStarted else { return .fault("The microVM is already running.") }
      do {
        let config = try spec.machineConfig()
        session = try starter(config)
        state = .running
        return .noContent
      } catch {
        return .fault("Cannot start the microVM: \(error)")
      }
    case "FlushMetrics":
      guard let path = metricsPath else {
        return .fault("The metrics system is not initialized: PUT /metrics first.")
      }
      return writeMetrics(to: path)
    case "SendCtrlAltDel":
      guard let session else { return .fault("The microVM is not running.") }
      guard state == .running else { return .fault("The microVM is paused: resume it first.") }
      guard session.machine.sendCtrlAltDel() else {
        return .fault("The guest has not enabled its i8042 keyboard; the keys were not sent.")
      }
      return .noContent
    default:
      return .fault(
        "action_type: unknown action '\(type)'; choose InstanceStart, SendCtrlAltDel or FlushMetrics"
      )
    }
  }

  private func changeState(_ body: [UInt8]) -> APIResponse {
    let wanted: String
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      wanted = try r.require("state", try r.string("state"))
      try r.finish()
    } catch {
      return .fault(error.description)
    }
    guard wanted == "Paused" || wanted == "Resumed" else {
      return .fault("state: '\(wanted)'; choose Paused or Resumed")
    }
    guard let session else { return .fault("The microVM is not running.") }
    let machine = session.machine
    if wanted == "Paused" {
      // Parks the vCPU at its next exit; false when the run loop is not running.
      guard state == .paused || machine.pause() else {
        return .fault("The microVM is not running (it has not started yet, or it has stopped).")
      }
      state = .paused
    } else {
      machine.resume()
      state = .running
    }
    return .noContent
  }

  /// Firecracker's levels; "Off" keeps only critical messages (swift-log has no off).
  static let logLevels: [String: Logger.Level] = [
    "error": .error, "warning": .warning, "info": .info, "debug": .debug, "trace": .trace,
    "off": .critical,
  ]

  private func setLogger(_ body: [UInt8]) -> APIResponse {
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      let path = try r.string("log_path")
      let levelName = try r.string("level")
      let showLevel = try r.bool("show_level") ?? true
      let showOrigin = try r.bool("show_log_origin") ?? false
      if r.value("module") != nil {
        return .fault("module: filtering by module is not supported")
      }
      try r.finish()
      var level: Logger.Level?
      if let n = levelName {
        guard let l = VMController.logLevels[n.lowercased()] else {
          return .fault("level: '\(n)'; choose Error, Warning, Info, Debug, Trace or Off")
        }
        level = l
      }
      if let path {
        do { try logSink.redirect(to: path, showLevel: showLevel, showOrigin: showOrigin) } catch {
          return .fault("log_path: \(error)")
        }
      }
      if let level { logSink.level = level }
      return .noContent
    } catch {
      return .fault(error.description)
    }
  }

  /// The whole machine to `snapshot_path` (one file: memory included, so `mem_file_path`
  /// is not written). Only while paused, as Firecracker requires.
  private func createSnapshot(_ body: [UInt8]) -> APIResponse {
    let path: String
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      path = try r.require("snapshot_path", try r.string("snapshot_path"))
      _ = try r.string("mem_file_path")
      if let t = try r.string("snapshot_type"), t != "Full" {
        return .fault("snapshot_type: '\(t)'; only Full snapshots are supported")
      }
      try r.finish()
    } catch {
      return .fault(error.description)
    }
    guard let session, state == .paused else {
      return .fault("The microVM must be paused to create a snapshot: PATCH /vm Paused first.")
    }
    let machine = session.machine
    do {
      // Between exits on the parked vCPU thread, so CPU and device state are stable.
      _ = try machine.onVCPUThread { try machine.saveSnapshot(to: path) }
      return .noContent
    } catch {
      return .fault("Cannot create the snapshot: \(error)")
    }
  }

  /// `PUT /snapshot/load`, as Firecracker: only before anything was configured or
  /// started. SwiftVMM's snapshot file holds the memory too, so the memory backend
  /// (`mem_backend` of type File, or the deprecated `mem_file_path`: exactly one, as
  /// the swagger requires) names the path `/snapshot/create` was given and is not read.
  private func loadSnapshot(_ body: [UInt8]) -> APIResponse {
    let load: SnapshotLoad
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      let path = try r.require("snapshot_path", try r.string("snapshot_path"))
      let memFile = try r.string("mem_file_path")
      let backend = r.value("mem_backend")
      switch (memFile, backend) {
      case (nil, nil):
        throw JSONFieldError("mem_backend", "is required (or the deprecated mem_file_path)")
      case (.some, .some):
        throw JSONFieldError("mem_file_path", "is not allowed together with mem_backend")
      case (nil, .some(let b)):
        var m = try JSONObjectReader(b, path: "mem_backend")
        _ = try m.require("backend_path", try m.string("backend_path"))
        let type = try m.require("backend_type", try m.string("backend_type"))
        guard type == "File" else {
          throw JSONFieldError(
            "mem_backend.backend_type", "'\(type)'; only File is supported (no Uffd)")
        }
        try m.finish()
      case (.some, nil): break
      }
      for key in ["enable_diff_snapshots", "track_dirty_pages"] where try r.bool(key) == true {
        throw JSONFieldError(key, "diff snapshots are not supported")
      }
      let resume = try r.bool("resume_vm") ?? false
      var engine: EngineKind?
      // SwiftVMM's extension: the engine to resume on.
      if let ext = r.value("swiftvmm") {
        var e = try JSONObjectReader(ext, path: "swiftvmm")
        if let name = try e.string("engine") {
          guard let k = EngineKind(rawValue: name) else {
            throw JSONFieldError(
              "swiftvmm.engine", "'\(name)'; choose kvm, interpreter or translator")
          }
          engine = k
        }
        try e.finish()
      }
      try r.finish()
      load = SnapshotLoad(snapshotPath: path, engine: engine, resume: resume)
    } catch {
      return .fault("\(error)")
    }
    guard state == .notStarted else {
      return .fault("Loading a microVM snapshot is not allowed after starting the microVM.")
    }
    guard !configured else {
      return .fault(
        "Loading a microVM snapshot is not allowed after configuring boot-specific resources.")
    }
    guard let loader else { return .fault("This VMM cannot load snapshots.") }
    do {
      session = try loader(load)
      state = load.resume ? .running : .paused
      return .noContent
    } catch {
      return .fault("Cannot load the snapshot: \(error)")
    }
  }

  private func setMetrics(_ body: [UInt8]) -> APIResponse {
    do {
      var r = try JSONObjectReader(try parseBody(body), path: "")
      let path = try r.require("metrics_path", try r.string("metrics_path"))
      try r.finish()
      guard metricsPath == nil else { return .fault("Reinitialization of metrics not allowed.") }
      // Opened now, so a bad path is refused here and not at the first flush.
      let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK, 0o644)
      guard fd >= 0 else {
        return .fault("metrics_path: cannot open \(path): \(String(cString: strerror(errno)))")
      }
      close(fd)
      metricsPath = path
      return .noContent
    } catch {
      return .fault(error.description)
    }
  }

  /// One JSON line of the machine's counters (docs/STATS.md names), appended.
  private func writeMetrics(to path: String) -> APIResponse {
    var fields: [String: JSONValue] = [
      "utc_timestamp_ms": .integer(Int64(Date().timeIntervalSince1970 * 1000)),
      "state": .string(state.rawValue),
    ]
    if let m = session?.machine {
      // Read between exits on the vCPU thread (also while paused), so counters are stable.
      let counters = (try? m.onVCPUThread { m.statistics() }) ?? [:]
      for (k, v) in counters { fields[k] = .integer(Int64(bitPattern: v)) }
    }
    let line = Array((JSONValue.object(fields).text + "\n").utf8)
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK, 0o644)
    guard fd >= 0 else {
      return .fault("cannot open \(path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    let n = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard n == line.count else {
      return .fault(
        "cannot write \(path): \(n < 0 ? String(cString: strerror(errno)) : "short write")")
    }
    return .noContent
  }
}
