import ArgumentParser
import Engine
import VMM

struct CPUIDCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cpuid",
    abstract: "Print the CPUID table a guest will see under a policy, checked against an engine.")

  @Option(help: "A policy name (default, kvm, minimal) or a JSON policy file.")
  var policy: String = "default"
  @Option(help: "Check the policy against this engine: kvm or interpreter.")
  var engine: String = "interpreter"

  func run() throws {
    guard let kind = EngineKind(rawValue: engine) else {
      throw ValidationError("unknown engine '\(engine)'; choose kvm or interpreter")
    }
    let p: CPUIDPolicy
    do {
      p = try CPUIDPolicy.load(nameOrPath: policy)
      try p.validate(engine: kind.rawValue, implemented: EngineFeatures.implemented(by: kind))
    } catch {
      fail("\(error)", status: .unusableInput)
    }
    print(p.formatted())
  }
}
