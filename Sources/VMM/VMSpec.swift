import Engine
import Foundation

/// A VM described the way Firecracker's `--config-file` and API describe one
/// (`boot-source`, `machine-config`, `drives`, `network-interfaces`), plus a
/// `swiftvmm` section for what Firecracker has no word for. The config file and
/// the API socket both read into this one type; `machineConfig()` maps it onto
/// `MachineConfig`, whose `validate()` stays the one check of values.
public struct VMSpec: Equatable, Sendable {
  public struct BootSource: Equatable, Sendable {
    public var kernelImagePath: String
    public var bootArgs: String?
    public var initrdPath: String?
    public init(kernelImagePath: String, bootArgs: String? = nil, initrdPath: String? = nil) {
      self.kernelImagePath = kernelImagePath
      self.bootArgs = bootArgs
      self.initrdPath = initrdPath
    }
  }

  public struct MachineSettings: Equatable, Sendable {
    public var vcpuCount = 1
    public var memSizeMiB = 128  // Firecracker's default
    public init() {}
  }

  public struct Drive: Equatable, Sendable {
    public var driveID: String
    public var pathOnHost: String
    public var isRootDevice: Bool
    public var isReadOnly: Bool
    public init(driveID: String, pathOnHost: String, isRootDevice: Bool, isReadOnly: Bool) {
      self.driveID = driveID
      self.pathOnHost = pathOnHost
      self.isRootDevice = isRootDevice
      self.isReadOnly = isReadOnly
    }
  }

  public struct NetworkInterface: Equatable, Sendable {
    public var ifaceID: String
    public var hostDevName: String
    public var guestMAC: [UInt8]?
    public init(ifaceID: String, hostDevName: String, guestMAC: [UInt8]? = nil) {
      self.ifaceID = ifaceID
      self.hostDevName = hostDevName
      self.guestMAC = guestMAC
    }
  }

  /// The `swiftvmm` section: engine, memory virtualization, CPUID policy, and
  /// the command line's other machine options under their flag names.
  public struct Extensions: Equatable, Sendable {
    public var engine: EngineKind?
    public var mmu: MMUMode?
    public var shadowCap: Int?
    public var nestedWalkCache = false
    /// A policy name (default, kvm, minimal) or a JSON policy file.
    public var cpuid: String?
    public var deterministic = false
    public var maxInstructions: UInt64?
    public var timeout: Double?
    public var console: ConsoleKind?
    public var rng = false
    /// User-mode networking, as `--net user[,hostfwd=...]` spells it.
    public var net: String?
    public init() {}
  }

  public var bootSource: BootSource?
  public var machine = MachineSettings()
  public var drives: [Drive] = []
  public var networkInterfaces: [NetworkInterface] = []
  public var swiftvmm = Extensions()

  public init() {}

  // MARK: Reading

  /// Reads a whole config file. Every error names its field.
  public static func parse(configFile bytes: [UInt8]) throws(JSONFieldError) -> VMSpec {
    let doc: JSONValue
    do { doc = try JSONValue.parse(bytes) } catch { throw JSONFieldError("", error.description) }
    var r = try JSONObjectReader(doc, path: "")
    var spec = VMSpec()
    if let v = r.value("boot-source") {
      spec.bootSource = try parseBootSource(v, path: "boot-source")
    }
    if let v = r.value("machine-config") {
      spec.machine = try parseMachineConfig(v, path: "machine-config")
    }
    if let list = try r.array("drives") {
      for (i, v) in list.enumerated() {
        try spec.put(drive: try parseDrive(v, path: "drives[\(i)]"), path: "drives[\(i)]")
      }
    }
    if let list = try r.array("network-interfaces") {
      for (i, v) in list.enumerated() {
        let p = "network-interfaces[\(i)]"
        try spec.put(interface: try parseNetworkInterface(v, path: p), path: p)
      }
    }
    if let v = r.value("swiftvmm") { spec.swiftvmm = try parseExtensions(v, path: "swiftvmm") }
    // Firecracker's sections this machine has no such device for: refused by name, not ignored.
    for k in ["balloon", "vsock", "logger", "metrics", "mmds-config", "entropy", "cpu-config"] {
      if r.value(k) != nil {
        throw JSONFieldError(k, "not supported by SwiftVMM (see README, Config file)")
      }
    }
    try r.finish()
    return spec
  }

  public static func parseBootSource(_ v: JSONValue, path: String) throws(JSONFieldError)
    -> BootSource
  {
    var r = try JSONObjectReader(v, path: path)
    let kernel = try r.require("kernel_image_path", try r.string("kernel_image_path"))
    let b = BootSource(
      kernelImagePath: kernel, bootArgs: try r.string("boot_args"),
      initrdPath: try r.string("initrd_path"))
    try r.finish()
    return b
  }

  public static func parseMachineConfig(_ v: JSONValue, path: String) throws(JSONFieldError)
    -> MachineSettings
  {
    var r = try JSONObjectReader(v, path: path)
    var m = MachineSettings()
    // Ranges are only what the types hold: MachineConfig.validate() judges the values.
    m.vcpuCount = Int(try r.require("vcpu_count", try r.integer("vcpu_count", in: 0...255)))
    m.memSizeMiB = Int(
      try r.require("mem_size_mib", try r.integer("mem_size_mib", in: 0...(1 << 40))))
    if try r.bool("smt") == true {
      throw JSONFieldError(r.child("smt"), "SMT is not supported (one thread per core)")
    }
    if try r.bool("track_dirty_pages") == true {
      throw JSONFieldError(r.child("track_dirty_pages"), "dirty-page tracking is not supported")
    }
    if let t = try r.string("cpu_template"), t != "None" {
      throw JSONFieldError(
        r.child("cpu_template"), "'\(t)': use the swiftvmm section's cpuid policy instead")
    }
    if let h = try r.string("huge_pages"), h != "None" {
      throw JSONFieldError(r.child("huge_pages"), "'\(h)': huge pages are not supported")
    }
    try r.finish()
    return m
  }

  public static func parseDrive(_ v: JSONValue, path: String) throws(JSONFieldError) -> Drive {
    var r = try JSONObjectReader(v, path: path)
    let d = Drive(
      driveID: try r.require("drive_id", try r.string("drive_id")),
      pathOnHost: try r.require("path_on_host", try r.string("path_on_host")),
      isRootDevice: try r.require("is_root_device", try r.bool("is_root_device")),
      isReadOnly: try r.bool("is_read_only") ?? false)
    if let c = try r.string("cache_type"), c != "Unsafe" {
      throw JSONFieldError(r.child("cache_type"), "'\(c)': only Unsafe (no flush on FLUSH)")
    }
    if let e = try r.string("io_engine"), e != "Sync" {
      throw JSONFieldError(r.child("io_engine"), "'\(e)': only Sync is supported")
    }
    for k in ["partuuid", "rate_limiter", "socket"] where r.value(k) != nil {
      throw JSONFieldError(r.child(k), "not supported by SwiftVMM")
    }
    try r.finish()
    // The drive ID becomes the disk's serial: virtio-blk's rules, checked in one place.
    do {
      _ = try DiskSpec.validated(path: d.pathOnHost, readOnly: d.isReadOnly, id: d.driveID)
    } catch {
      let field =
        if case .malformed = error { "drive_id" } else { "path_on_host" }
      throw JSONFieldError(r.child(field), error.description)
    }
    return d
  }

  public static func parseNetworkInterface(_ v: JSONValue, path: String) throws(JSONFieldError)
    -> NetworkInterface
  {
    var r = try JSONObjectReader(v, path: path)
    let id = try r.require("iface_id", try r.string("iface_id"))
    let tap = try r.require("host_dev_name", try r.string("host_dev_name"))
    do { _ = try NetworkSpec.parse("tap=\(tap)") } catch {
      throw JSONFieldError(r.child("host_dev_name"), error.description)
    }
    var mac: [UInt8]?
    if let m = try r.string("guest_mac") {
      guard let bytes = NetworkSpec.parseMAC(m) else {
        throw JSONFieldError(
          r.child("guest_mac"), "'\(m)' is not a MAC address (52:54:00:12:34:56)")
      }
      mac = bytes
    }
    for k in ["rx_rate_limiter", "tx_rate_limiter"] where r.value(k) != nil {
      throw JSONFieldError(r.child(k), "not supported by SwiftVMM")
    }
    try r.finish()
    return NetworkInterface(ifaceID: id, hostDevName: tap, guestMAC: mac)
  }

  public static func parseExtensions(_ v: JSONValue, path: String) throws(JSONFieldError)
    -> Extensions
  {
    var r = try JSONObjectReader(v, path: path)
    var x = Extensions()
    if let e = try r.string("engine") {
      guard let k = EngineKind(rawValue: e) else {
        throw JSONFieldError(
          r.child("engine"), "unknown engine '\(e)'; choose kvm, interpreter or translator")
      }
      x.engine = k
    }
    if let m = try r.string("mmu") {
      guard let mode = MMUMode(name: m.lowercased()) else {
        throw JSONFieldError(
          r.child("mmu"), "unknown mode '\(m)'; choose direct, nested, shadow or paravirt")
      }
      x.mmu = mode
    }
    x.shadowCap = try r.integer("shadow_cap", in: 0...Int64(Int32.max)).map { Int($0) }
    x.nestedWalkCache = try r.bool("nested_walk_cache") ?? false
    x.cpuid = try r.string("cpuid")
    x.deterministic = try r.bool("deterministic") ?? false
    x.maxInstructions = try r.integer("max_instructions", in: 0...Int64.max).map { UInt64($0) }
    x.timeout = try r.number("timeout")
    if let c = try r.string("console") {
      guard let k = ConsoleKind(rawValue: c) else {
        throw JSONFieldError(r.child("console"), "'\(c)': choose uart or virtio")
      }
      x.console = k
    }
    x.rng = try r.bool("rng") ?? false
    if let n = try r.string("net") {
      do { _ = try NetworkSpec.parse(n) } catch {
        throw JSONFieldError(r.child("net"), error.description)
      }
      x.net = n
    }
    try r.finish()
    return x
  }

  // MARK: Changing

  /// Adds a drive or replaces the one with its ID (the API's PUT /drives/{id}).
  public mutating func put(drive d: Drive, path: String) throws(JSONFieldError) {
    if d.isRootDevice,
      drives.contains(where: { $0.isRootDevice && $0.driveID != d.driveID })
    {
      throw JSONFieldError("\(path).is_root_device", "another drive is already the root device")
    }
    if let i = drives.firstIndex(where: { $0.driveID == d.driveID }) {
      drives[i] = d
    } else {
      drives.append(d)
    }
  }

  /// Adds an interface or replaces the one with its ID. The machine has one NIC.
  public mutating func put(interface n: NetworkInterface, path: String) throws(JSONFieldError) {
    if let i = networkInterfaces.firstIndex(where: { $0.ifaceID == n.ifaceID }) {
      networkInterfaces[i] = n
    } else if !networkInterfaces.isEmpty {
      throw JSONFieldError(path, "only one network interface is supported so far")
    } else {
      networkInterfaces.append(n)
    }
  }

  // MARK: Mapping onto MachineConfig

  /// The machine this spec describes: files read, every value validated by
  /// `MachineConfig.validate()`, errors naming the spec's field.
  public func machineConfig() throws(JSONFieldError) -> MachineConfig {
    guard let boot = bootSource else {
      throw JSONFieldError("boot-source", "is required (the kernel to boot)")
    }
    return try machineConfig(
      kernel: try VMSpec.read(boot.kernelImagePath, field: "boot-source.kernel_image_path"),
      kernelName: boot.kernelImagePath)
  }

  /// The same with the kernel's bytes given (a program embedding a guest);
  /// `boot-source`'s other fields still apply when present.
  public func machineConfig(kernel: [UInt8], kernelName: String) throws(JSONFieldError)
    -> MachineConfig
  {
    let boot = bootSource ?? BootSource(kernelImagePath: kernelName)
    var c = MachineConfig(
      kernel: kernel, kernelName: kernelName, engine: swiftvmm.engine ?? EngineSelection.best())
    if let p = boot.initrdPath { c.initrd = try VMSpec.read(p, field: "boot-source.initrd_path") }
    c.cpus = machine.vcpuCount
    c.memorySize = UInt64(machine.memSizeMiB) << 20
    c.mmuMode = swiftvmm.mmu
    c.shadowPageCap = swiftvmm.shadowCap
    c.nestedWalkCache = swiftvmm.nestedWalkCache
    c.deterministic = swiftvmm.deterministic
    c.maxInstructions = swiftvmm.maxInstructions
    c.timeout = swiftvmm.timeout
    var args = boot.bootArgs ?? ""
    // The root drive is vda, as Firecracker makes it, and the kernel is told so unless the
    // boot arguments already say where the root is.
    let ordered = drives.filter(\.isRootDevice) + drives.filter { !$0.isRootDevice }
    if let root = ordered.first, root.isRootDevice, !args.contains("root=") {
      args += (args.isEmpty ? "" : " ") + "root=/dev/vda \(root.isReadOnly ? "ro" : "rw")"
    }
    c.commandLine = args
    for (i, d) in ordered.enumerated() {
      let i = drives.firstIndex(of: d) ?? i
      do {
        c.virtio.disks.append(
          try DiskSpec.validated(path: d.pathOnHost, readOnly: d.isReadOnly, id: d.driveID))
      } catch {
        throw JSONFieldError("drives[\(i)].path_on_host", error.description)
      }
    }
    if let console = swiftvmm.console { c.virtio.console = console }
    c.virtio.entropy = swiftvmm.rng
    if let n = networkInterfaces.first {
      if swiftvmm.net != nil {
        throw JSONFieldError(
          "swiftvmm.net", "give either network-interfaces or swiftvmm.net, not both")
      }
      c.virtio.network = .tap(name: n.hostDevName)
      if let mac = n.guestMAC { c.virtio.mac = mac }
    } else if let n = swiftvmm.net {
      do { c.virtio.network = try NetworkSpec.parse(n) } catch {
        throw JSONFieldError("swiftvmm.net", error.description)
      }
    }
    do { try c.validate() } catch { throw VMSpec.fieldError(for: "\(error)") }
    if let p = swiftvmm.cpuid {
      do { c.cpuid = try CPUIDPolicy.load(nameOrPath: p) } catch {
        throw JSONFieldError("swiftvmm.cpuid", "\(error)")
      }
    }
    return c
  }

  /// Where each command-line option of `validate()`'s messages lives in a spec.
  static let fieldOfOption: [(option: String, field: String)] = [
    ("--cpus", "machine-config.vcpu_count"), ("--timeout", "swiftvmm.timeout"),
    ("--max-instructions", "swiftvmm.max_instructions"),
    ("--deterministic", "swiftvmm.deterministic"), ("--mmu", "swiftvmm.mmu"),
    ("--shadow-cap", "swiftvmm.shadow_cap"), ("--nested-walk-cache", "swiftvmm.nested_walk_cache"),
  ]

  /// Renames the option a validation message starts with to the spec's field;
  /// the rest (memory size) is about machine-config.mem_size_mib.
  static func fieldError(for message: String) -> JSONFieldError {
    for (option, field) in fieldOfOption where message.hasPrefix(option) {
      var rest = message.dropFirst(option.count)
      if rest.hasPrefix(" ") { rest = rest.dropFirst() }
      return JSONFieldError(field, String(rest))
    }
    return JSONFieldError("machine-config.mem_size_mib", message)
  }

  static func read(_ path: String, field: String) throws(JSONFieldError) -> [UInt8] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
      throw JSONFieldError(field, "'\(path)' does not exist")
    }
    guard !isDir.boolValue, let d = FileManager.default.contents(atPath: path) else {
      throw JSONFieldError(field, "'\(path)' cannot be read")
    }
    return [UInt8](d)
  }

  // MARK: Writing

  /// `GET /machine-config`'s body.
  public var machineConfigJSON: JSONValue {
    .object([
      "vcpu_count": .integer(Int64(machine.vcpuCount)),
      "mem_size_mib": .integer(Int64(machine.memSizeMiB)), "smt": .bool(false),
      "track_dirty_pages": .bool(false), "huge_pages": .string("None"),
    ])
  }

  /// The whole spec in the config file's shape (`GET /vm/config`); it reads back as itself.
  public var json: JSONValue {
    var doc: [String: JSONValue] = ["machine-config": machineConfigJSON]
    if let b = bootSource {
      var o: [String: JSONValue] = ["kernel_image_path": .string(b.kernelImagePath)]
      if let a = b.bootArgs { o["boot_args"] = .string(a) }
      if let i = b.initrdPath { o["initrd_path"] = .string(i) }
      doc["boot-source"] = .object(o)
    }
    doc["drives"] = .array(
      drives.map {
        .object([
          "drive_id": .string($0.driveID), "path_on_host": .string($0.pathOnHost),
          "is_root_device": .bool($0.isRootDevice), "is_read_only": .bool($0.isReadOnly),
        ])
      })
    doc["network-interfaces"] = .array(
      networkInterfaces.map { n in
        var o: [String: JSONValue] = [
          "iface_id": .string(n.ifaceID), "host_dev_name": .string(n.hostDevName),
        ]
        if let m = n.guestMAC { o["guest_mac"] = .string(NetworkSpec.formatMAC(m)) }
        return .object(o)
      })
    var x: [String: JSONValue] = [:]
    if let e = swiftvmm.engine { x["engine"] = .string(e.rawValue) }
    if let m = swiftvmm.mmu { x["mmu"] = .string(m.name) }
    if let s = swiftvmm.shadowCap { x["shadow_cap"] = .integer(Int64(s)) }
    if swiftvmm.nestedWalkCache { x["nested_walk_cache"] = .bool(true) }
    if let p = swiftvmm.cpuid { x["cpuid"] = .string(p) }
    if swiftvmm.deterministic { x["deterministic"] = .bool(true) }
    if let n = swiftvmm.maxInstructions { x["max_instructions"] = .integer(Int64(n)) }
    if let t = swiftvmm.timeout { x["timeout"] = .number(t) }
    if let c = swiftvmm.console { x["console"] = .string(c.rawValue) }
    if swiftvmm.rng { x["rng"] = .bool(true) }
    if let n = swiftvmm.net { x["net"] = .string(n) }
    if !x.isEmpty { doc["swiftvmm"] = .object(x) }
    return .object(doc)
  }
}
