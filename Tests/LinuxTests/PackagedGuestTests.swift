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

  /// Xen 4.17 with Debian's kernel as dom0 and a busybox initramfs gets as far as under
  /// `qemu-system-x86_64 -accel tcg -m 512 -kernel xen-4.17-amd64 -initrd "vmlinuz
  /// console=hvc0 earlyprintk=xen,initrd" -append "console=com1 dom0_mem=256M"`: dom0 runs
  /// /init, which powers off, and Xen halts the machine (cli; hlt, a guest that can never
  /// resume here; QEMU sits halted). Without firmware Xen must not call the BIOS in real
  /// mode (`no-real-mode`); it takes the multiboot memory map and scans for the RSDP.
  func testXenBootsDebiansKernelAsDom0ToItsInit() throws {
    let xen = try image(.xen)
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
    }
    let script = """
      #!/bin/sh
      mount -t proc proc /proc
      mount -t devtmpfs devtmpfs /dev
      echo "dom0 init ran on $(uname -r)" > /dev/kmsg
      poweroff -f

      """
    let initrd = try StandardInitramfs.build(guest: g, initScript: script)
    var c = MachineConfig(kernel: xen, kernelName: "xen-4.17-amd64", engine: .interpreter)
    c.commandLine = "console=com1 com1=115200 dom0_mem=256M no-real-mode"
    c.modules = [
      .init(
        bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage))),
        name: "vmlinuz console=hvc0 earlyprintk=xen"),
      .init(bytes: initrd, name: "initrd"),
    ]
    c.memorySize = 512 << 20
    c.timeout = 600
    let console = ConsoleOutput(capturing: ())
    let o = try Machine(config: c, console: console).run()
    let out = console.capturedText
    let reached = Self.xenStages.last { out.contains($0) } ?? "nothing"
    for s in Self.xenStages {
      XCTAssertTrue(
        out.contains(s), "missing \"\(s)\"; last stage \"\(reached)\"; output:\n\(out.suffix(3000))"
      )
    }
    guard case .guestFailure(let why) = o, why.contains("halted with interrupts disabled") else {
      return XCTFail("expected Xen to halt the machine, got \(o)")
    }
  }

  /// What Xen and dom0 print on the way, in order.
  static let xenStages = [
    "(XEN) Domain heap initialised",
    "(XEN) ACPI: RSDP 000F0400",
    "(XEN) Platform timer is 3.580MHz ACPI PM Timer",
    "(XEN)  Dom0 kernel: 64-bit, PAE, lsb",
    "Run /init as init process",
    "dom0 init ran on 6.1.",
    "(XEN) Hardware Dom0 halted: halting machine",
  ]
}
