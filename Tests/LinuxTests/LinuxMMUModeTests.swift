import Boot
import Engine
import Foundation
import Interpreter
import TestSupport
import XCTest

@testable import VMM

/// Debian Linux boots to busybox, forks and powers off with nested and shadow
/// paging, and `--mmu paravirt` refuses it (Linux does not speak the PV MMU ABI); on the
/// interpreter and on the translator.
/// Release builds only, like LinuxBootTests.
final class LinuxMMUModeTests: XCTestCase {
  func boot(_ mode: MMUMode, engine: EngineKind = .interpreter) throws -> (
    MachineOutcome, String, [String: UInt64]
  ) {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
    }
    #if DEBUG
      throw XCTSkip(
        "Linux MMU-mode tests need a release build (scripts/test); the debug interpreter is too slow"
      )
    #else
      let script = StandardInitramfs.initScript(
        commands:
          "echo MMU-MODE-OK; i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done; echo forks=$i"
      )
      var c = MachineConfig(
        kernel: [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage))),
        kernelName: "vmlinuz",
        engine: engine)
      c.initrd = try StandardInitramfs.build(guest: g, initScript: script, gzip: false)
      c.commandLine = "console=ttyS0 panic=-1"
      c.memorySize = 256 << 20
      c.cpuid = try CPUIDPolicy.named("kvm")
      c.timeout = 900
      c.mmuMode = mode
      let console = ConsoleOutput(capturing: ())
      let m = try Machine(config: c, console: console)
      let o = m.run()
      return (o, console.capturedText, m.statistics())
    #endif
  }

  func testLinuxBootsWithNestedPaging() throws { try nested(.interpreter) }
  func testLinuxBootsWithShadowPaging() throws { try shadow(.interpreter) }
  func testParavirtRefusesLinux() throws { try paravirt(.interpreter) }
  // The translator in the same modes (direct: LinuxTranslatorTests).
  func testLinuxBootsWithNestedPagingOnTheTranslator() throws { try nested(.translator) }
  func testLinuxBootsWithShadowPagingOnTheTranslator() throws { try shadow(.translator) }
  func testParavirtRefusesLinuxOnTheTranslator() throws { try paravirt(.translator) }

  func nested(_ engine: EngineKind) throws {
    let (o, out, s) = try boot(.nested, engine: engine)
    XCTAssertEqual(o, .powerOff, String(out.suffix(3000)))
    XCTAssertTrue(out.contains("MMU-MODE-OK") && out.contains("forks=20"), String(out.suffix(3000)))
    XCTAssertGreaterThan(s["mmu.exits.nested_faults"] ?? 0, 1000)
    if engine == .translator { XCTAssertGreaterThan(s["translator.blocks_run"] ?? 0, 100_000) }
  }

  func shadow(_ engine: EngineKind) throws {
    let (o, out, s) = try boot(.shadow, engine: engine)
    XCTAssertEqual(o, .powerOff, String(out.suffix(3000)))
    XCTAssertTrue(out.contains("MMU-MODE-OK") && out.contains("forks=20"), String(out.suffix(3000)))
    XCTAssertGreaterThan(s["mmu.exits.write_protect"] ?? 0, 0)
    XCTAssertGreaterThan(s["mmu.exits.cr3_loads"] ?? 0, 20)
    if engine == .translator { XCTAssertGreaterThan(s["translator.blocks_run"] ?? 0, 100_000) }
  }

  func paravirt(_ engine: EngineKind) throws {
    let (o, _, _) = try boot(.paravirt, engine: engine)
    guard case .guestFailure(let why) = o else { return XCTFail("\(o)") }
    XCTAssertTrue(why.contains("HC_PV_HELLO"), why)
  }
}
