import Memory
import TestSupport
import XCTest

@testable import Boot

/// The BIOS data area as firmware leaves it, for multiboot and Linux guests alike.
final class BIOSDataAreaTests: XCTestCase {
  func checkBDA(_ mem: GuestMemory, file: StaticString = #filePath, line: UInt = #line) throws {
    func u16(_ a: UInt64) throws -> UInt16 { try mem.read(GuestPhysicalAddress(a)) }
    XCTAssertEqual(try u16(0x400), 0x3F8, "COM1 base", file: file, line: line)
    XCTAssertEqual(try u16(0x402), 0, "no COM2", file: file, line: line)
    XCTAssertEqual(try u16(0x40E), 0x9FC0, "EBDA segment", file: file, line: line)
    XCTAssertEqual(try u16(0x413), 639, "base memory KiB", file: file, line: line)
    let equipment = try u16(0x410)
    XCTAssertEqual(equipment & 2, 2, "x87 present", file: file, line: line)
    XCTAssertEqual((equipment >> 9) & 7, 1, "one serial port", file: file, line: line)
    XCTAssertEqual(try u16(0x41A), try u16(0x41C), "empty keyboard ring", file: file, line: line)
    XCTAssertEqual(try u16(0x480), 0x1E, file: file, line: line)
    XCTAssertEqual(try u16(0x482), 0x3E, file: file, line: line)
    // The EBDA starts with its size in KiB, and the base memory the BDA reports ends at it,
    // where the memory map's usable low memory ends.
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(0x9_FC00), count: 1), [1])
    XCTAssertEqual(UInt64(try u16(0x413)) << 10, MemoryMap.lowMemoryEnd)
  }

  func testMultibootGuestFindsTheBDA() throws {
    let mem = try GuestMemory(size: 64 << 20)
    _ = try KernelLoader.load(try GuestImages.bytes("hello.elf"), commandLine: "", into: mem)
    try checkBDA(mem)
  }

  func testLinuxGuestFindsTheBDA() throws {
    let mem = try GuestMemory(size: 64 << 20)
    _ = try LinuxBoot.load(makeBzImage(), commandLine: "", into: mem)
    try checkBDA(mem)
  }

  /// Several modules, each with its own string, in order (QEMU's -initrd "FILE ARGS,FILE2").
  func testMultibootModulesKeepTheirCommandLines() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let a = [UInt8](repeating: 0xA1, count: 5000)
    let b = [UInt8](repeating: 0xB2, count: 100)
    _ = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "xen console=com1",
      modules: [
        .init(bytes: a, name: "vmlinuz console=hvc0 earlyprintk=xen"),
        .init(bytes: b, name: "initrd.img"),
      ],
      into: mem)
    let mbi = GuestPhysicalAddress(BootLayout.multibootInfo)
    XCTAssertEqual(try mem.read(mbi + 20, as: UInt32.self), 2)
    let mods = UInt64(try mem.read(mbi + 24, as: UInt32.self))
    func string(_ at: UInt64) throws -> String {
      var out: [UInt8] = []
      while let c = try mem.readBytes(GuestPhysicalAddress(at + UInt64(out.count)), count: 1).first,
        c != 0, out.count < 4096
      {
        out.append(c)
      }
      return String(decoding: out, as: UTF8.self)
    }
    var last: UInt64 = 0
    for (i, (bytes, name)) in [(a, "vmlinuz console=hvc0 earlyprintk=xen"), (b, "initrd.img")]
      .enumerated()
    {
      let e = mods + UInt64(i * 16)
      let start = UInt64(try mem.read(GuestPhysicalAddress(e), as: UInt32.self))
      let end = UInt64(try mem.read(GuestPhysicalAddress(e + 4), as: UInt32.self))
      XCTAssertGreaterThan(start, last, "modules in order, not overlapping")
      XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(start), count: Int(end - start)), bytes)
      XCTAssertEqual(
        try string(UInt64(try mem.read(GuestPhysicalAddress(e + 8), as: UInt32.self))), name)
      last = end
    }
  }
}
