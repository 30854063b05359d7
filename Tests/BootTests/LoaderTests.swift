import Memory
import TestSupport
import X86
import XCTest

@testable import Boot

final class LoaderTests: XCTestCase {
  func testMultibootHelloEntryState() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let img = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "hello.elf a=1", into: mem)
    XCTAssertEqual(img.format, .multiboot)
    let s = img.initialState
    XCTAssertEqual(s.general.rax, 0x2BAD_B002)
    XCTAssertEqual(s.general.rbx, BootLayout.multibootInfo)
    XCTAssertEqual(s.special.cr0 & CR0.pe, CR0.pe)
    XCTAssertEqual(s.special.cr0 & CR0.pg, 0)
    XCTAssertTrue(s.special.cs.db)
    XCTAssertEqual(s.general.rflags & RFLAGS.if, 0)
    // Multiboot info: flags, mem_upper, cmdline string, mmap.
    let mbi = GuestPhysicalAddress(BootLayout.multibootInfo)
    let flags = try mem.read(mbi, as: UInt32.self)
    XCTAssertEqual(flags & 0b1000101, 0b1000101)
    XCTAssertEqual(try mem.read(mbi + 8, as: UInt32.self), (64 << 10) - 1024 - 128)
    let cmdAddr = UInt64(try mem.read(mbi + 16, as: UInt32.self))
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(cmdAddr), count: 14), Array("hello.elf a=1".utf8) + [0]
    )
    let mmapLen = try mem.read(mbi + 44, as: UInt32.self)
    XCTAssertEqual(mmapLen % 24, 0)
    XCTAssertGreaterThanOrEqual(mmapLen / 24, 4)
    // The image is in memory at its entry.
    XCTAssertTrue(mem.isRAM(GuestPhysicalAddress(s.general.rip)))
  }

  func testMultibootModuleIsLoadedAfterKernel() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let data = [UInt8](repeating: 0xAB, count: 5000)
    let img = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "",
      modules: [.init(bytes: data, name: "initrd")],
      into: mem)
    let mbi = GuestPhysicalAddress(BootLayout.multibootInfo)
    XCTAssertEqual(try mem.read(mbi, as: UInt32.self) & 8, 8)
    XCTAssertEqual(try mem.read(mbi + 20, as: UInt32.self), 1)
    let mods = GuestPhysicalAddress(UInt64(try mem.read(mbi + 24, as: UInt32.self)))
    let start = UInt64(try mem.read(mods, as: UInt32.self))
    let end = UInt64(try mem.read(mods + 4, as: UInt32.self))
    XCTAssertEqual(end - start, 5000)
    XCTAssertEqual(start % 4096, 0)
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(start), count: 5000), data)
    XCTAssertGreaterThanOrEqual(img.imageEnd, end)
  }

  func testELF64EntersLongMode() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let img = try KernelLoader.load(
      try GuestImages.bytes("hello64.elf"), commandLine: "", into: mem)
    XCTAssertEqual(img.format, .elf64)
    let s = img.initialState.special
    XCTAssertEqual(s.efer & (EFER.lme | EFER.lma), EFER.lme | EFER.lma)
    XCTAssertTrue(s.cs.l)
    XCTAssertEqual(s.cr3, BootLayout.pml4)
    // PML4[0] -> PDPT; PDPT[3] -> 4th PD; its last entry maps 4 GiB - 2 MiB.
    let pdpt =
      try mem.read(GuestPhysicalAddress(BootLayout.pml4), as: UInt64.self) & PTE.addressMask
    let pd3 = try mem.read(GuestPhysicalAddress(pdpt + 24), as: UInt64.self) & PTE.addressMask
    let last = try mem.read(GuestPhysicalAddress(pd3 + 511 * 8), as: UInt64.self)
    XCTAssertEqual(last & PTE.addressMask, 0xFFE0_0000)
    XCTAssertNotEqual(last & PTE.pageSize, 0)
  }

  // MARK: Bad input

  func testGarbageIsRejected() throws {
    let mem = try GuestMemory(size: 16 << 20)
    XCTAssertThrowsError(
      try KernelLoader.load([UInt8](repeating: 0x90, count: 4096), commandLine: "", into: mem)
    ) {
      XCTAssertEqual($0 as? BootError, .unrecognizedImage)
    }
    XCTAssertThrowsError(try KernelLoader.load([1, 2, 3], commandLine: "", into: mem)) {
      guard case .truncated = $0 as? BootError else { return XCTFail("\($0)") }
    }
  }

  func testTruncatedELFIsRejected() throws {
    let mem = try GuestMemory(size: 16 << 20)
    let full = try GuestImages.bytes("hello64.elf")
    for cut in [20, 63, 100, full.count / 2] {
      XCTAssertThrowsError(
        try KernelLoader.load(Array(full.prefix(cut)), commandLine: "", into: mem), "cut at \(cut)"
      ) {
        XCTAssertTrue($0 is BootError, "\($0)")
      }
    }
  }

  func testTruncatedMultibootIsRejected() throws {
    let mem = try GuestMemory(size: 16 << 20)
    let full = try GuestImages.bytes("hello.elf")
    XCTAssertThrowsError(
      try KernelLoader.load(Array(full.prefix(full.count / 2)), commandLine: "", into: mem)
    ) {
      XCTAssertTrue($0 is BootError, "\($0)")
    }
  }

  func testSegmentsOutsideRAMAreRejected() throws {
    // hello.elf loads at 1 MiB; 1 MiB of RAM cannot hold it.
    let mem = try GuestMemory(size: 1 << 20)
    XCTAssertThrowsError(
      try KernelLoader.load(try GuestImages.bytes("hello.elf"), commandLine: "", into: mem)
    ) {
      guard case .doesNotFit = $0 as? BootError else { return XCTFail("\($0)") }
    }
    // An ELF64 whose segment sits at 3 GiB, in the MMIO hole.
    var elf = try GuestImages.bytes("hello64.elf")
    patchFirstLoadSegmentAddress(&elf, to: 0xC000_0000)
    let mem2 = try GuestMemory(size: 16 << 20)
    XCTAssertThrowsError(try KernelLoader.load(elf, commandLine: "", into: mem2)) {
      guard case .doesNotFit = $0 as? BootError else { return XCTFail("\($0)") }
    }
  }

  func testMultibootMayLoadAboveItsOwnStructures() throws {
    // kvm-unit-tests' realmode.flat loads at 0x8000, just past the command line.
    var elf = try GuestImages.bytes("hello.elf")
    let first = patchFirstLoadSegmentAddress32(&elf, to: 0x8000)
    let mem = try GuestMemory(size: 16 << 20)
    _ = try KernelLoader.load(elf, commandLine: "hello.elf", into: mem)
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(0x8000), count: 16), Array(elf[first..<(first + 16)]))
    // Lower, it would overlap the command line, and ELF64 images still need 0x10000 (page tables).
    _ = patchFirstLoadSegmentAddress32(&elf, to: 0x7000)
    XCTAssertThrowsError(try KernelLoader.load(elf, commandLine: "", into: mem)) {
      guard case .doesNotFit = $0 as? BootError else { return XCTFail("\($0)") }
    }
    var elf64 = try GuestImages.bytes("hello64.elf")
    patchFirstLoadSegmentAddress(&elf64, to: 0x8000)
    XCTAssertThrowsError(try KernelLoader.load(elf64, commandLine: "", into: mem)) {
      guard case .doesNotFit = $0 as? BootError else { return XCTFail("\($0)") }
    }
  }

  func testOverlongCommandLineIsRejected() throws {
    let mem = try GuestMemory(size: 16 << 20)
    let long = String(repeating: "x", count: 5000)
    XCTAssertThrowsError(
      try KernelLoader.load(try GuestImages.bytes("hello.elf"), commandLine: long, into: mem)
    ) {
      guard case .doesNotFit = $0 as? BootError else { return XCTFail("\($0)") }
    }
  }

  func testRandomBytesNeverCrashTheParser() throws {
    var g = SystemRandomNumberGenerator()
    let base = try GuestImages.bytes("hello64.elf")
    let mem = try GuestMemory(size: 16 << 20)
    for _ in 0..<300 {
      var b = base
      for _ in 0..<8 {
        b[Int.random(in: 0..<min(b.count, 256), using: &g)] = UInt8.random(in: 0...255, using: &g)
      }
      _ = try? KernelLoader.load(b, commandLine: "", into: mem)
    }
  }

  /// ELF32 form of `patchFirstLoadSegmentAddress`; returns the segment's file offset.
  private func patchFirstLoadSegmentAddress32(_ b: inout [UInt8], to addr: UInt32) -> Int {
    let r = ByteReader(b)
    let phoff = Int(try! r.u32(28))
    let phentsize = Int(try! r.u16(42))
    for i in 0..<Int(try! r.u16(44)) {
      let o = phoff + i * phentsize
      if (try! r.u32(o)) == 1, (try! r.u32(o + 20)) > 0 {
        for k in 0..<4 {
          b[o + 8 + k] = UInt8(truncatingIfNeeded: addr >> (8 * UInt32(k)))
          b[o + 12 + k] = UInt8(truncatingIfNeeded: addr >> (8 * UInt32(k)))
        }
        return Int(try! r.u32(o + 4))
      }
    }
    XCTFail("no PT_LOAD segment")
    return 0
  }

  private func patchFirstLoadSegmentAddress(_ b: inout [UInt8], to addr: UInt64) {
    let r = ByteReader(b)
    let phoff = Int(try! r.u64(32))
    let phentsize = Int(try! r.u16(54))
    let phnum = Int(try! r.u16(56))
    for i in 0..<phnum {
      let o = phoff + i * phentsize
      if (try! r.u32(o)) == 1 {
        for k in 0..<8 {
          b[o + 16 + k] = UInt8(truncatingIfNeeded: addr >> (8 * UInt64(k)))
          b[o + 24 + k] = UInt8(truncatingIfNeeded: addr >> (8 * UInt64(k)))
        }
        return
      }
    }
  }
}
