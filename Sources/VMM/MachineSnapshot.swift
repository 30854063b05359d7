import Boot
import CHostIO
import Devices
import Engine
import Foundation
import Logging
import Memory
import X86

#if canImport(Glibc)
  import Glibc
#endif

/// What a save or restore did, for messages and measurements.
public struct SnapshotSummary: Sendable {
  public var path: String
  public var bytes: UInt64
  /// Guest RAM pages stored (zero pages are skipped).
  public var pagesStored: UInt64
  public var pagesTotal: UInt64
  public var seconds: Double
}

/// The machine description a snapshot carries: enough to build the same machine
/// again. Runtime knobs (timeout, instruction watchdog) are the restoring run's own.
struct SnapshotConfig: Codable {
  struct Entry: Codable {
    var function, index: UInt32
    var indexed: Bool
    var eax, ebx, ecx, edx: UInt32
  }
  var kernelName: String
  var commandLine: String
  var linuxProtocol: String?
  var memorySize: UInt64
  var cpus: Int
  var engine: String
  /// The CPUID the guest saw: restored as an explicit policy, so a target engine
  /// that cannot provide a feature the guest may use refuses instead of crashing it.
  var cpuid: [Entry]
  var mmuMode: String?
  var shadowPageCap: Int?
  var nestedWalkCache: Bool
  var frameSeed: UInt64
  var deterministic: Bool
  /// virtio-blk disks (path, read-only, serial) and virtio-rng. The disks' contents
  /// are not in the snapshot: restore with the files as they were at the save.
  var disks: [[String]]?
  var entropy: Bool?
  /// virtio-console instead of the UART, and virtio-net's `--net` spec and MAC. The
  /// network back-end starts afresh at restore (see VirtioNet+State.swift).
  var virtioConsole: Bool?
  var network: String?
  var mac: [UInt8]?
}

struct SnapshotMeta: Codable {
  var producer: String
  var savedOn: Date
  var config: SnapshotConfig
  /// Part names in the order they were saved (devices, clocks).
  var parts: [String]
  var vcpus: Int
}

extension Machine {
  /// Retired instructions under instruction-count time (0 otherwise: only
  /// deterministic runs stop at an instruction).
  var instructionsRetired: UInt64 {
    (platform?.clock as? InstructionClock)?.instructions() ?? 0
  }

  /// The name and version written into snapshots (and printed by `--version`).
  public static let softwareVersion = "swiftvmm 0.1.0"

  /// The machine's state parts by stable name: every bus device that has state,
  /// and the platform's clocks. Throws for a bus device that neither saves its
  /// state nor declares it has none.
  func snapshotParts() throws -> [(name: String, part: SnapshotPart)] {
    var objects = portBus.devices + mmioBus.devices
    if let platform { objects.append(platform) }
    objects.append(scheduler)
    if let pci = devices?.pciHost { objects += pci.snapshotFunctions as [AnyObject] }
    var out: [(String, SnapshotPart)] = []
    var seen = Set<ObjectIdentifier>()
    var kinds: [String: Int] = [:]
    for o in objects where seen.insert(ObjectIdentifier(o)).inserted {
      if o is StatelessDevice { continue }
      guard let p = o as? SnapshotPart else {
        throw SnapshotError.unsupported("device \(type(of: o)) does not save its state")
      }
      let n = kinds[p.snapshotKind, default: 0]
      kinds[p.snapshotKind] = n + 1
      out.append((n == 0 ? p.snapshotKind : "\(p.snapshotKind).\(n)", p))
    }
    return out
  }

  private func snapshotConfig() throws -> SnapshotConfig {
    let policy = try CPUIDPolicy.forEngine(config.cpuid, engine: config.engine)
    return SnapshotConfig(
      kernelName: config.kernelName, commandLine: config.commandLine,
      linuxProtocol: config.linuxProtocol?.rawValue, memorySize: config.memorySize,
      cpus: config.cpus, engine: config.engine.rawValue,
      cpuid: policy.entries.map {
        .init(
          function: $0.function, index: $0.index, indexed: $0.indexed, eax: $0.result.eax,
          ebx: $0.result.ebx, ecx: $0.result.ecx, edx: $0.result.edx)
      }, mmuMode: config.mmuMode?.name, shadowPageCap: config.shadowPageCap,
      nestedWalkCache: config.nestedWalkCache, frameSeed: config.frameSeed,
      deterministic: config.deterministic,
      disks: config.virtio.disks.map { [$0.path, $0.readOnly ? "ro" : "rw", $0.id ?? ""] },
      entropy: config.virtio.entropy, virtioConsole: config.virtio.console == .virtio,
      network: config.virtio.network.spec, mac: config.virtio.mac)
  }

  /// Saves the whole machine to `path`: configuration, kernel, vCPU, every
  /// device's state, guest RAM. Call it while the vCPU is stopped between exits:
  /// before or after `run()`, or inside `onVCPUThread` while paused.
  @discardableResult
  public func saveSnapshot(to path: String) throws -> SnapshotSummary {
    let start = DispatchTime.now().uptimeNanoseconds
    guard config.mmuMode != .paravirt else {
      throw SnapshotError.unsupported("the paravirtual MMU's pinned tables are not saved")
    }
    let parts = try snapshotParts()
    // Gather everything that can fail before the file is created.
    let cpuStates = try cpus.map { try $0.saveVCPU() }
    var records: [(String, [UInt8])] = []
    for (name, p) in parts { records.append((name, try p.saveState())) }
    let meta = SnapshotMeta(
      producer: Machine.softwareVersion, savedOn: Date(), config: try snapshotConfig(),
      parts: parts.map(\.name), vcpus: cpus.count)
    let json = JSONEncoder()
    json.outputFormatting = .sortedKeys

    let w = try SnapshotWriter(path: path)
    try w.section("meta", Array(try json.encode(meta)))
    for (i, s) in cpuStates.enumerated() {
      try w.section("vcpu.\(i)", Array(try json.encode(s)))
    }
    for (name, r) in records { try w.section("part." + name, r) }
    try w.section("kernel", config.kernel)
    if let initrd = config.initrd { try w.section("initrd", initrd) }
    let (stored, total) = try writeMemory(w)
    try w.finish()
    var st = stat()
    stat(path, &st)
    return SnapshotSummary(
      path: path, bytes: UInt64(st.st_size), pagesStored: stored, pagesTotal: total,
      seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
  }

  /// Memory section: region table, then runs of non-zero pages, ended by region 0xFFFFFFFF.
  private func writeMemory(_ w: SnapshotWriter) throws -> (stored: UInt64, total: UInt64) {
    struct Run {
      var region: UInt32
      var first: UInt64
      var count: UInt64
    }
    var runs: [Run] = []
    var total: UInt64 = 0
    let zero = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { zero.deallocate() }
    memset(zero, 0, 4096)
    for (ri, r) in memory.regions.enumerated() {
      let pages = r.size / 4096
      total += pages
      var p: UInt64 = 0
      while p < pages {
        let ptr = memory.pagePointer(r.start.rawValue + p * 4096)!
        if memcmp(ptr, zero, 4096) != 0 {
          if let last = runs.last, last.region == UInt32(ri), last.first + last.count == p {
            runs[runs.count - 1].count += 1
          } else {
            runs.append(Run(region: UInt32(ri), first: p, count: 1))
          }
        }
        p += 1
      }
    }
    let stored = runs.reduce(0) { $0 + $1.count }
    let length =
      4 + UInt64(memory.regions.count) * 16 + UInt64(runs.count) * 20 + stored * 4096 + 4
    try w.beginSection("memory", length: length)
    try w.appendInteger(UInt32(memory.regions.count))
    for r in memory.regions {
      try w.appendInteger(r.start.rawValue)
      try w.appendInteger(r.size)
    }
    for run in runs {
      try w.appendInteger(run.region)
      try w.appendInteger(run.first)
      try w.appendInteger(run.count)
      let r = memory.regions[Int(run.region)]
      let gpa = r.start.rawValue + run.first * 4096
      if let p = memory.contiguousPointer(region: Int(run.region)) {
        let off = Int(run.first * 4096)
        try w.append(UnsafeRawBufferPointer(start: p + off, count: Int(run.count * 4096)))
      } else {
        for k in 0..<run.count {
          try w.append(
            UnsafeRawBufferPointer(start: memory.pagePointer(gpa + k * 4096)!, count: 4096))
        }
      }
    }
    try w.appendInteger(UInt32.max)
    return (stored, total)
  }

  /// Builds a fresh machine from the snapshot at `path` and puts it back in the saved
  /// state, ready to `run()`. `engine` runs it on another engine than it was saved on.
  /// A file that is truncated, corrupt or of another format version is refused
  /// before a machine is built.
  public convenience init(
    restoring path: String, engine: EngineKind? = nil, maxInstructions: UInt64? = nil,
    timeout: Double? = nil, console: ConsoleOutput,
    logger: Logger = Logger(label: "swiftvmm")
  ) throws {
    let start = DispatchTime.now().uptimeNanoseconds
    let reader = try SnapshotReader(path: path)
    let decoder = JSONDecoder()
    let meta: SnapshotMeta
    var cpuStates: [VCPUSnapshot] = []
    do {
      meta = try decoder.decode(SnapshotMeta.self, from: Data(try reader.section("meta")))
      guard meta.vcpus == meta.config.cpus, (1...256).contains(meta.vcpus) else {
        throw SnapshotError.corrupt("\(meta.vcpus) vCPU states for \(meta.config.cpus) vCPUs")
      }
      for i in 0..<meta.vcpus {
        cpuStates.append(
          try decoder.decode(VCPUSnapshot.self, from: Data(try reader.section("vcpu.\(i)"))))
      }
    } catch let e as SnapshotError {
      throw e
    } catch {
      throw SnapshotError.corrupt("machine description cannot be read: \(error)")
    }
    var config = try Machine.config(
      from: meta.config, kernel: try reader.bytes("kernel"),
      initrd: reader.sections["initrd"].map { Array($0) }, engine: engine)
    config.maxInstructions = maxInstructions
    config.timeout = timeout
    try self.init(config: config, console: console, logger: logger)
    try restore(from: reader, meta: meta, cpus: cpuStates)
    logger.info(
      "restored \(path) in \(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) s")
  }

  static func config(
    from s: SnapshotConfig, kernel: [UInt8], initrd: [UInt8]?, engine: EngineKind?
  ) throws -> MachineConfig {
    guard let saved = EngineKind(rawValue: s.engine) else {
      throw SnapshotError.corrupt("unknown engine \(s.engine)")
    }
    var c = MachineConfig(kernel: kernel, kernelName: s.kernelName, engine: engine ?? saved)
    c.initrd = initrd
    c.commandLine = s.commandLine
    if let p = s.linuxProtocol {
      guard let lp = LinuxBootProtocol(rawValue: p) else {
        throw SnapshotError.corrupt("unknown boot protocol \(p)")
      }
      c.linuxProtocol = lp
    }
    c.memorySize = s.memorySize
    c.cpus = s.cpus
    c.cpuid = CPUIDPolicy(
      entries: s.cpuid.map {
        CPUIDEntry(
          function: $0.function, index: $0.index, indexed: $0.indexed,
          result: CPUIDResult(eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx))
      })
    if let m = s.mmuMode {
      guard let mode = MMUMode(name: m) else {
        throw SnapshotError.corrupt("unknown MMU mode \(m)")
      }
      // Another engine has its own memory virtualization.
      if c.engine.interpretsInstructions == saved.interpretsInstructions { c.mmuMode = mode }
    }
    c.shadowPageCap = c.mmuMode == .shadow ? s.shadowPageCap : nil
    c.nestedWalkCache = s.nestedWalkCache && c.mmuMode == .nested
    c.frameSeed = s.frameSeed
    c.deterministic = s.deterministic && c.engine.interpretsInstructions
    for d in s.disks ?? [] {
      guard d.count == 3 else { throw SnapshotError.corrupt("disk entry \(d)") }
      c.virtio.disks.append(
        DiskSpec(path: d[0], readOnly: d[1] == "ro", id: d[2].isEmpty ? nil : d[2]))
    }
    c.virtio.entropy = s.entropy ?? false
    if s.virtioConsole == true { c.virtio.console = .virtio }
    if let n = s.network {
      do { c.virtio.network = try NetworkSpec.parse(n) } catch {
        throw SnapshotError.corrupt("network \(n): \(error)")
      }
    }
    if let mac = s.mac {
      guard mac.count == 6 else { throw SnapshotError.corrupt("MAC address \(mac)") }
      c.virtio.mac = mac
    }
    return c
  }

  private func restore(from reader: SnapshotReader, meta: SnapshotMeta, cpus states: [VCPUSnapshot])
    throws
  {
    let parts = try snapshotParts()
    let mine = Set(parts.map(\.name))
    let saved = Set(meta.parts)
    let savedOn = EngineKind(rawValue: meta.config.engine)
    var fresh: [String] = []
    for (name, p) in parts {
      guard saved.contains(name) else {
        // Saved by a machine whose KVM engine had no emulated platform (before the PC
        // platform came to KVM): those parts start at power-on.
        if savedOn?.interpretsInstructions == false && config.engine.interpretsInstructions {
          fresh.append(name)
          continue
        }
        throw SnapshotError.corrupt("snapshot has no state for \(name)")
      }
      try p.restoreState(try reader.bytes("part." + name))
    }
    if !fresh.isEmpty {
      logger.warning(
        "saved on \(meta.config.engine): \(fresh.joined(separator: ", ")) start in their power-on state"
      )
    }
    let dropped = meta.parts.filter { !mine.contains($0) }
    if !dropped.isEmpty && config.engine.interpretsInstructions {
      throw SnapshotError.corrupt(
        "the machine has no place for the state of \(dropped.joined(separator: ", "))")
    }
    if !dropped.isEmpty {
      // Tolerated only on KVM, for the same reason: a part the machine does not have.
      logger.warning(
        "restoring on \(cpu.engineName): no place for the state of \(dropped.joined(separator: ", "))"
      )
    }
    try restoreMemory(try reader.section("memory"))
    for (c, s) in zip(cpus, states) { try c.restoreVCPU(s) }
    mmu?.vcpuStateRestored()
  }

  private func restoreMemory(_ s: UnsafeRawBufferPointer) throws {
    var o = 0
    func take<T: FixedWidthInteger>(_: T.Type) throws -> T {
      guard s.count - o >= MemoryLayout<T>.size else {
        throw SnapshotError.corrupt("memory section ends early")
      }
      let v = T(littleEndian: s.loadUnaligned(fromByteOffset: o, as: T.self))
      o += MemoryLayout<T>.size
      return v
    }
    let n = Int(try take(UInt32.self))
    guard n == memory.regions.count else {
      throw SnapshotError.corrupt("memory has \(n) regions, the machine \(memory.regions.count)")
    }
    for r in memory.regions {
      let start = try take(UInt64.self)
      let size = try take(UInt64.self)
      guard start == r.start.rawValue, size == r.size else {
        throw SnapshotError.corrupt("memory region layout differs from the machine's")
      }
    }
    // Pages not in a run are zero; the loader may have written some of them. Only
    // those are cleared: writing the rest would back all of RAM with host memory.
    var next = [UInt64](repeating: 0, count: n)
    let zeroPage = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { zeroPage.deallocate() }
    memset(zeroPage, 0, 4096)
    func zero(region ri: Int, upTo end: UInt64) {
      let r = memory.regions[ri]
      while next[ri] < end {
        let p = memory.pagePointer(r.start.rawValue + next[ri] * 4096)!
        if memcmp(p, zeroPage, 4096) != 0 { memset(p, 0, 4096) }
        next[ri] += 1
      }
    }
    while true {
      let ri = try take(UInt32.self)
      if ri == UInt32.max { break }
      let first = try take(UInt64.self)
      let count = try take(UInt64.self)
      guard Int(ri) < n else { throw SnapshotError.corrupt("memory run in region \(ri)") }
      let r = memory.regions[Int(ri)]
      let pages = r.size / 4096
      guard first >= next[Int(ri)], count > 0, count <= pages, first <= pages - count,
        UInt64(s.count - o) >= count * 4096
      else { throw SnapshotError.corrupt("memory run out of order or out of range") }
      zero(region: Int(ri), upTo: first)
      for k in 0..<count {
        memcpy(memory.pagePointer(r.start.rawValue + (first + k) * 4096)!, s.baseAddress! + o, 4096)
        o += 4096
      }
      next[Int(ri)] = first + count
    }
    guard o == s.count else { throw SnapshotError.corrupt("stray bytes after guest memory") }
    for ri in 0..<n { zero(region: ri, upTo: memory.regions[ri].size / 4096) }
  }
}

extension MMUVirtualization {
  /// After a restore: the VMM's tables are rebuilt, not saved. Nested tables fill
  /// on demand; the shadow MMU starts over from the restored CR3.
  func vcpuStateRestored() {
    shadow?.handleCR3Load(cpu: cpu)
  }
}
