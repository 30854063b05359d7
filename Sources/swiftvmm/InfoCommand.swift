import ArgumentParser
import VMM

struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show what this host offers: /dev/kvm, its kind, API version and CPUID leaves.")

  func run() throws {
    print(EngineSelection.hostReport())
  }
}
