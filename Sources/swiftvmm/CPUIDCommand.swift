import ArgumentParser
import Engine
import VMM

struct CPUIDCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cpuid",
    abstract: "Print the CPUID table a guest will see under a policy, checked against an engine.",
    discussion: """
      Without --policy, shows what `run` gives a guest without --cpuid: the default policy \
      less what the engine lacks. Policy files are described in docs/CPUID.md.
      """)

  @Option(help: "A policy name (default, kvm, minimal) or a JSON policy file (docs/CPUID.md).")
  var policy: String?
  @Option(help: "Check the policy against this engine: kvm, interpreter or translator.")
  var engine: String = "interpreter"
  @Flag(help: "List the feature names policies may enable or disable, and who provides them.")
  var listFeatures = false

  func run() throws {
    guard let kind = EngineKind(rawValue: engine) else {
      CPUIDCommand.usageError("unknown engine '\(engine)'; choose kvm, interpreter or translator")
    }
    if listFeatures {
      print(CPUIDCommand.featureList(engine: kind))
      return
    }
    let p: CPUIDPolicy
    do {
      p = try CPUIDPolicy.forEngine(
        policy.map { try CPUIDPolicy.load(nameOrPath: $0) }, engine: kind)
    } catch {
      fail("\(error)", status: .unusableInput)
    }
    print(p.formatted())
  }

  static func featureList(engine: EngineKind) -> String {
    let implemented = EngineFeatures.implemented(by: engine)
    let def = Set(CPUIDPolicy.default.enabledFeatures.map(\.name))
    func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
    var lines = ["name                     leaf        reg bit  default  \(engine.rawValue)"]
    for f in CPUFeature.all {
      let loc = "\(hex(f.leaf))".padding(toLength: 11, withPad: " ", startingAt: 0)
      lines.append(
        f.name.padding(toLength: 24, withPad: " ", startingAt: 0) + " " + loc + " "
          + f.register.rawValue + " "
          + String(f.bit).padding(toLength: 4, withPad: " ", startingAt: 0)
          + " " + (def.contains(f.name) ? "on " : "off") + "      "
          + (implemented.contains(f.name) ? "yes" : "no"))
    }
    return lines.joined(separator: "\n")
  }
}
