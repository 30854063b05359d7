import Engine
import XCTest

@testable import VMM

/// `MachineConfig.validate()`: the one check every subcommand and `Machine` use.
final class MachineConfigValidationTests: XCTestCase {
  let host: UInt64 = 8 << 30

  func config(_ engine: EngineKind = .interpreter, _ edit: (inout MachineConfig) -> Void = { _ in })
    -> MachineConfig
  {
    var c = MachineConfig(kernel: [], kernelName: "k", engine: engine)
    edit(&c)
    return c
  }

  func refused(_ c: MachineConfig, _ words: String, line: UInt = #line) {
    XCTAssertThrowsError(try c.validate(hostMemory: host), line: line) { e in
      XCTAssertTrue("\(e)".contains(words), "\(e)", line: line)
    }
  }

  func testDefaultsPass() throws {
    try config().validate(hostMemory: host)
    try config(.kvm).validate(hostMemory: host)
  }

  func testNumericBounds() {
    refused(config { $0.cpus = 0 }, "--cpus 0")
    refused(config { $0.cpus = -3 }, "--cpus -3")
    refused(config { $0.cpus = 1 << 40 }, "at most 8 vCPUs")
    refused(config { $0.cpus = 9 }, "at most 8 vCPUs")
    XCTAssertNoThrow(try config { $0.cpus = 8 }.validate(hostMemory: host))
    refused(config(.kvm) { $0.cpus = 2 }, "KVM engine runs one vCPU")
    refused(
      config {
        $0.cpus = 2
        $0.mmuMode = .shadow
      }, "SMP runs with --mmu direct")
    for t in [0, -1, .infinity, .nan, 1e300] as [Double] {
      refused(config { $0.timeout = t }, "--timeout")
    }
    refused(config { $0.maxInstructions = 0 }, "--max-instructions 0")
    refused(config { $0.maxInstructions = .max }, "at most")
    for cap in [0, -1, Int.min, Int.max, MachineConfig.maxShadowPageCap + 1] {
      refused(
        config {
          $0.mmuMode = .shadow; $0.shadowPageCap = cap
        }, "--shadow-cap")
    }
    refused(config { $0.memorySize = 4096 }, "below the minimum")
    refused(config { $0.memorySize = (64 << 20) + 1 }, "multiple of 4 KiB")
    refused(config { $0.memorySize = host + 4096 }, "larger than this host")
    refused(config { $0.memorySize = .max & ~0xFFF }, "larger than this host")
  }

  func testShadowPagesCountAgainstHostMemory() throws {
    var c = config {
      $0.mmuMode = .shadow; $0.memorySize = host - (1 << 30)
    }
    try c.validate(hostMemory: host)
    c.shadowPageCap = MachineConfig.maxShadowPageCap  // 4 GiB of shadow pages
    refused(c, "of shadow tables is larger than this host")
  }

  func testContradictions() {
    refused(config(.kvm) { $0.mmuMode = .shadow }, "--mmu shadow needs the interpreter")
    refused(config(.kvm) { $0.deterministic = true }, "--deterministic needs a software engine")
    refused(config(.kvm) { $0.maxInstructions = 10 }, "--max-instructions needs a software engine")
    refused(config { $0.shadowPageCap = 64 }, "--shadow-cap applies only to --mmu shadow")
    refused(
      config {
        $0.mmuMode = .nested; $0.shadowPageCap = 64
      }, "--shadow-cap applies only")
    refused(config { $0.nestedWalkCache = true }, "--nested-walk-cache applies only")
    refused(config(.kvm) { $0.nestedWalkCache = true }, "--nested-walk-cache applies only")
  }

  func testMachineRefusesAnInvalidConfig() {
    let c = config { $0.timeout = -1 }
    XCTAssertThrowsError(try Machine(config: c, console: ConsoleOutput(capturing: ())))
  }

  func testMemorySizeSyntax() throws {
    let h: UInt64 = 1 << 40
    XCTAssertEqual(try MemorySize.parse("256", hostMemory: h), 256 << 20)
    XCTAssertEqual(try MemorySize.parse("256M", hostMemory: h), 256 << 20)
    XCTAssertEqual(try MemorySize.parse("256MiB", hostMemory: h), 256 << 20)
    XCTAssertEqual(try MemorySize.parse("2g", hostMemory: h), 2 << 30)
    XCTAssertEqual(try MemorySize.parse("2GiB", hostMemory: h), 2 << 30)
    XCTAssertEqual(try MemorySize.parse("4096K", hostMemory: h), 4 << 20)
    XCTAssertEqual(try MemorySize.parse("4096KiB", hostMemory: h), 4 << 20)
    for bad in ["", "M", "MiB", "256iB", "256X", "256XiB", "-1", "1.5G", "0x100", "256 M"] {
      XCTAssertThrowsError(try MemorySize.parse(bad, hostMemory: h), bad)
    }
    XCTAssertEqual(
      try? MemorySize.parse("0", hostMemory: h), nil, "zero is refused")
  }

  func testNearestName() {
    XCTAssertEqual(NearestName.suggest("rn", among: ["run", "info", "linux"]), "run")
    XCTAssertEqual(NearestName.suggest("sse42", among: ["sse4_2", "sse4_1", "ssse3"]), "sse4_2")
    XCTAssertNil(NearestName.suggest("frobnicate", among: ["run", "info"]))
    XCTAssertEqual(NearestName.distance("kitten", "sitting"), 3)
    XCTAssertEqual(NearestName.distance("", "abc"), 3)
  }
}
