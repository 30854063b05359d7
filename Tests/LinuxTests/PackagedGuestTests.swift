import Boot
import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

/// Guests Debian packages that QEMU boots with `-kernel` (`swiftvmm guest fetch-package`,
/// run by `.ci/run`). Release builds only, like the other Linux boots.
final class PackagedGuestTests: XCTestCase {
  func image(_ g: PackagedGuest) throws -> [UInt8] {
    guard let path = g.locate() else {
      throw XCTSkip(
        "\(g.package) not fetched; run `swiftvmm guest fetch-package \(g.rawValue)`")
    }
    #if DEBUG
      throw XCTSkip("packaged-guest boots need a release build (scripts/test)")
    #else
      return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    #endif
  }

  /// Debian's memtest86+x64.bin (its syssize ends 8 bytes past the file) loads through
  /// the 64-bit Linux entry and starts its first test on the serial console, as under
  /// `qemu-system-x86_64 -kernel memtest86+x64.bin -append console=ttyS0,115200`.
  func testMemtestStartsItsFirstTestOnTheSerialConsole() throws {
    var c = MachineConfig(
      kernel: try image(.memtest), kernelName: "memtest86+x64.bin", engine: .interpreter)
    c.commandLine = "console=ttyS0,115200"
    c.memorySize = 256 << 20
    c.timeout = 300
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let firstTest = "#0  [Address test, walking ones"
    console.whenCaptured(firstTest) { m.requestStop(.userQuit) }
    let o = m.run()
    let out = console.capturedText
    XCTAssertEqual(o, .userQuit, "memtest86+ did not start test #0; output:\n\(out.suffix(3000))")
    XCTAssertTrue(out.contains("Memtest86+ v6"), out.suffix(3000).description)
    XCTAssertTrue(out.contains(firstTest))
    // Cache sizes come from the CPUID policy's cache leaves (QEMU TCG shows them too).
    XCTAssertTrue(out.contains("L1 Cache:   32KB"), "memtest86+ found no L1 cache descriptor")
    XCTAssertTrue(out.contains("L2 Cache:    1MB"), "memtest86+ found no L2 cache descriptor")
    XCTAssertTrue(out.contains("L3 Cache:   16MB"), "memtest86+ found no L3 cache descriptor")
  }
}
