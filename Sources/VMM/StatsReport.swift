import Foundation

/// The one JSON encoder for run statistics: `--stats` writes one run,
/// `mmu-compare --json` a list of runs, both in the schema of docs/STATS.md.
public struct StatsReport {
  /// Bump when a field changes meaning or disappears; adding fields keeps it.
  public static let schemaVersion = 1
  /// Units of the fields that carry one; counters are plain event counts.
  static let units: [String: String] = [
    "wall_seconds": "seconds", "memory_bytes": "bytes", "timeout_seconds": "seconds",
    "counters": "events since the VM started",
  ]

  public var label: String
  public var config: MachineConfig
  public var engineName: String
  public var outcome: MachineOutcome
  public var counters: [String: UInt64]
  public var wallSeconds: Double

  public init(label: String = "", machine: Machine, outcome: MachineOutcome) {
    self.label = label
    config = machine.config
    engineName = machine.cpu.engineName
    self.outcome = outcome
    counters = machine.statistics()
    wallSeconds = machine.wallSeconds
  }

  /// The machine's configuration, as the run used it.
  var machineObject: [String: Any] {
    var m: [String: Any] = [
      "engine": config.engine.rawValue,
      "engine_name": engineName,
      "kernel": config.kernelName,
      "cmdline": config.commandLine,
      "memory_bytes": NSNumber(value: config.memorySize),
      "cpus": config.cpus,
      "deterministic": config.deterministic,
      "cpuid_features": (config.cpuid?.enabledFeatures.map(\.name)) ?? ["default"],
    ]
    if config.engine.interpretsInstructions {
      m["mmu"] = (config.mmuMode ?? .direct).name
      if config.mmuMode == .shadow { m["shadow_page_cap"] = config.effectiveShadowPageCap }
      if config.mmuMode == .nested { m["nested_walk_cache"] = config.nestedWalkCache }
    } else {
      m["mmu"] = "nested"  // EPT/NPT: what the hardware does
    }
    if let t = config.timeout { m["timeout_seconds"] = t }
    if let n = config.maxInstructions { m["max_instructions"] = NSNumber(value: n) }
    return m
  }

  var runObject: [String: Any] {
    var r: [String: Any] = [
      "machine": machineObject,
      "outcome": outcome.description,
      "exit_status": Int(outcome.exitStatus),
      "wall_seconds": wallSeconds,
      "counters": counters.mapValues { NSNumber(value: $0) },
    ]
    if !label.isEmpty { r["label"] = label }
    return r
  }

  /// One run (`--stats`).
  public func json() -> [UInt8] {
    var doc = runObject
    doc["schema_version"] = StatsReport.schemaVersion
    doc["units"] = StatsReport.units
    return StatsReport.encode(doc)
  }

  /// Several runs of one guest (`mmu-compare --json`).
  public static func json(runs: [StatsReport]) -> [UInt8] {
    encode([
      "schema_version": schemaVersion, "units": units, "runs": runs.map(\.runObject),
    ])
  }

  static func encode(_ doc: [String: Any]) -> [UInt8] {
    // Only strings, numbers, bools, arrays and dictionaries go in, so this cannot throw.
    let data = try! JSONSerialization.data(
      withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
    return [UInt8](data) + [0x0A]
  }
}
