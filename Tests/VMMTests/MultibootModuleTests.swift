import Boot
import Memory
import TestSupport
import XCTest

@testable import VMM

/// `MachineConfig.modules` (`run --module 'FILE ARGS'`) reaches the multiboot module list
/// after the initrd, and a Linux kernel refuses them.
final class MultibootModuleTests: XCTestCase {
  func testModulesFollowTheInitrdWithTheirStrings() throws {
    var c = MachineConfig(
      kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello.elf", engine: .interpreter)
    c.memorySize = 64 << 20
    c.initrd = [1, 2, 3]
    c.modules = [.init(bytes: [4, 5], name: "dom0 console=hvc0"), .init(bytes: [6], name: "rd")]
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    let mbi = GuestPhysicalAddress(BootLayout.multibootInfo)
    XCTAssertEqual(try m.memory.read(mbi + 20, as: UInt32.self), 3)
    let mods = UInt64(try m.memory.read(mbi + 24, as: UInt32.self))
    var names: [String] = []
    for i in 0..<3 {
      let s = UInt64(
        try m.memory.read(GuestPhysicalAddress(mods + UInt64(i * 16 + 8)), as: UInt32.self))
      let bytes = try m.memory.readBytes(GuestPhysicalAddress(s), count: 32)
      names.append(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
    }
    XCTAssertEqual(names, ["initrd", "dom0 console=hvc0", "rd"])
  }

  /// A multiboot guest finds the ACPI tables (as under SeaBIOS), so the PM registers
  /// their FADT describes answer: PM1a_CNT reads SCI_EN, not an unclaimed port's 0xFFFF.
  func testMultibootGuestGetsTheACPIPMRegisters() throws {
    var c = MachineConfig(
      kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello.elf", engine: .interpreter)
    c.memorySize = 64 << 20
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    let pm = PlatformLayout().pmBase
    XCTAssertEqual(m.portBus.read(port: pm + 4, size: 2), 1)
  }

  func testLinuxKernelRefusesModules() throws {
    var c = MachineConfig(kernel: makeLinuxLikeImage(), kernelName: "bz", engine: .interpreter)
    c.memorySize = 64 << 20
    c.modules = [.init(bytes: [1], name: "x")]
    XCTAssertThrowsError(try Machine(config: c, console: ConsoleOutput(capturing: ()))) { e in
      XCTAssertTrue("\(e)".contains("--module"), "\(e)")
    }
  }

  /// The smallest bzImage header LinuxBoot recognises (the module check comes first).
  func makeLinuxLikeImage() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 0x2000)
    b[0x1FE] = 0x55
    b[0x1FF] = 0xAA
    for (i, c) in Array("HdrS".utf8).enumerated() { b[0x202 + i] = c }
    return b
  }
}
