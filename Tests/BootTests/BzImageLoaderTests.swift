import Foundation
import Memory
import X86
import XCTest

@testable import Boot

/// A minimal synthetic bzImage: one setup sector plus the boot sector, then `kernelSize` bytes.
func makeBzImage(
  version: UInt16 = 0x020F, loadflags: UInt8 = 0x01, xloadflags: UInt16 = 0x01,
  cmdlineSize: UInt32 = 2047, initSize: UInt32 = 1 << 20, prefAddress: UInt64 = 0x100_0000,
  kernelSize: Int = 0x1000, payload: [UInt8]? = nil
) -> [UInt8] {
  var b = [UInt8](repeating: 0, count: 1024 + kernelSize)
  func put(_ o: Int, _ v: UInt64, _ n: Int) {
    for i in 0..<n { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
  }
  put(0x1F1, 1, 1)  // setup_sects
  put(0x1F4, UInt64(kernelSize / 16), 4)  // syssize
  put(0x1FE, 0xAA55, 2)
  put(0x200, 0x66EB, 2)  // jmp
  put(0x201, 0x6A, 1)  // header ends at 0x26C
  put(0x202, 0x5372_6448, 4)  // "HdrS"
  put(0x206, UInt64(version), 2)
  put(0x211, UInt64(loadflags), 1)
  put(0x22C, 0x7FFF_FFFF, 4)  // initrd_addr_max
  put(0x230, 0x20_0000, 4)  // kernel_alignment
  put(0x234, 1, 1)  // relocatable
  put(0x236, UInt64(xloadflags), 2)
  put(0x238, UInt64(cmdlineSize), 4)
  put(0x258, prefAddress, 8)
  put(0x260, UInt64(initSize), 4)
  // Recognisable kernel bytes.
  for i in 0..<kernelSize { b[1024 + i] = UInt8(truncatingIfNeeded: i * 7 + 1) }
  if let p = payload {
    b += p
    put(0x248, UInt64(kernelSize), 4)
    put(0x24C, UInt64(p.count), 4)
  }
  return b
}

final class BzImageLoaderTests: XCTestCase {
  func testParsesSyntheticHeader() throws {
    let img = makeBzImage()
    XCTAssertTrue(BzImageLoader.isBzImage(img))
    let h = try BzImageLoader.parseHeader(img)
    XCTAssertEqual(h.version, 0x020F)
    XCTAssertEqual(h.versionString, "2.15")
    XCTAssertEqual(h.setupSects, 1)
    XCTAssertEqual(h.kernelOffset, 1024)
    XCTAssertEqual(h.cmdlineSize, 2047)
    XCTAssertEqual(h.kernelAlignment, 0x20_0000)
    XCTAssertTrue(h.relocatable)
    XCTAssertEqual(h.headerEnd, 0x26C)
    XCTAssertFalse(BzImageLoader.isBzImage([UInt8](repeating: 0, count: 4096)))
  }

  /// Before 2.02 (and for a zImage) the kernel needs its real-mode setup code and the
  /// BIOS: refused, saying so.
  func testRefusesKernelsThatNeedTheRealModeSetupCode() {
    XCTAssertThrowsError(try BzImageLoader.parseHeader(makeBzImage(version: 0x0201))) { e in
      XCTAssertTrue("\(e)".contains("2.1"), "\(e)")
      XCTAssertTrue("\(e)".contains("real-mode setup code"), "\(e)")
      XCTAssertTrue("\(e)".contains("BIOS"), "\(e)")
    }
    XCTAssertThrowsError(try BzImageLoader.parseHeader(makeBzImage(loadflags: 0))) { e in
      XCTAssertTrue("\(e)".contains("LOADED_HIGH"), "\(e)")
      XCTAssertTrue("\(e)".contains("real-mode setup code"), "\(e)")
    }
  }

  /// Protocols 2.02-2.11, and kernels without XLF_KERNEL_64, enter through the 32-bit
  /// entry: protected mode, paging off, flat __BOOT_CS/__BOOT_DS, ESI = boot_params.
  func testOldProtocolsEnterThroughThe32BitEntry() throws {
    for (version, xlf) in [(UInt16(0x0202), UInt16(0)), (0x0209, 0), (0x020B, 1), (0x020F, 0)] {
      let img = makeBzImage(version: version, xloadflags: xlf)
      let h = try BzImageLoader.parseHeader(img)
      XCTAssertFalse(h.has64BitEntry, "protocol \(h.versionString)")
      let mem = try GuestMemory(size: 64 << 20)
      let b = try BzImageLoader.load(img, commandLine: "console=ttyS0", into: mem)
      let s = b.initialState
      // Before 2.10 there is no pref_address: the protected-mode kernel goes to 1 MiB.
      let load: UInt64 = version < 0x020A ? 0x10_0000 : 0x100_0000
      XCTAssertEqual(s.general.rip, load, "code32_start")
      XCTAssertEqual(
        try mem.read(GuestPhysicalAddress(0x1000 + 0x214), as: UInt32.self), UInt32(load))
      XCTAssertEqual(
        try mem.readBytes(GuestPhysicalAddress(load), count: 16), Array(img[1024..<1040]))
      XCTAssertEqual(s.general.rsi, LinuxBootLayout.zeroPage)
      XCTAssertEqual(s.general.rbx | s.general.rbp | s.general.rdi, 0)
      XCTAssertEqual(s.special.cr0 & CR0.pe, CR0.pe)
      XCTAssertEqual(s.special.cr0 & CR0.pg, 0)
      XCTAssertEqual(s.special.efer & EFER.lme, 0)
      XCTAssertEqual(s.special.cs.selector, LinuxBootLayout.bootCS)
      XCTAssertTrue(s.special.cs.db)
      XCTAssertFalse(s.special.cs.l)
      XCTAssertEqual(s.special.ds.selector, LinuxBootLayout.bootDS)
      XCTAssertEqual(s.general.rflags & RFLAGS.if, 0)
      // The GDT's __BOOT_CS is a 32-bit code segment (D=1, L=0).
      let cs = try mem.read(GuestPhysicalAddress(s.special.gdt.base + 0x10), as: UInt64.self)
      XCTAssertEqual(cs, 0x00CF_9A00_0000_FFFF)
      let cmd = try mem.read(GuestPhysicalAddress(0x1000 + 0x228), as: UInt32.self)
      XCTAssertEqual(
        try mem.readBytes(GuestPhysicalAddress(UInt64(cmd)), count: 14),
        Array("console=ttyS0".utf8) + [0])
    }
    // 2.12+ with XLF_KERNEL_64 keeps the 64-bit entry.
    XCTAssertTrue(try BzImageLoader.parseHeader(makeBzImage(version: 0x020C)).has64BitEntry)
  }

  /// Fields newer than the protocol are code, not header: their defaults are used.
  func testOldProtocolsIgnoreFieldsTheyDoNotHave() throws {
    var img = makeBzImage(version: 0x0204, cmdlineSize: 16)
    img[0x230] = 3  // kernel_alignment (2.05+): garbage here
    let h = try BzImageLoader.parseHeader(img)
    XCTAssertEqual(h.cmdlineSize, 255, "cmdline_size arrived in 2.06")
    XCTAssertEqual(h.prefAddress, 0)
    XCTAssertEqual(h.initrdAddrMax, 0x7FFF_FFFF, "initrd_addr_max is there from 2.03")
    XCTAssertEqual(
      try BzImageLoader.parseHeader(makeBzImage(version: 0x0202)).initrdAddrMax, 0x37FF_FFFF)
  }

  func testRefusesMissingFlagsAndTruncation() {
    XCTAssertThrowsError(try BzImageLoader.parseHeader(makeBzImage(loadflags: 0))) { e in
      XCTAssertTrue("\(e)".contains("LOADED_HIGH"), "\(e)")
    }
    XCTAssertThrowsError(try BzImageLoader.parseHeader(Array(makeBzImage().prefix(0x240))))
    XCTAssertThrowsError(try BzImageLoader.parseHeader(makeBzImage(initSize: 0x10)))
    var noMagic = makeBzImage()
    noMagic[0x202] = 0
    XCTAssertThrowsError(try BzImageLoader.parseHeader(noMagic))
    // Every truncation of a valid header is an error, never a crash.
    let good = makeBzImage()
    for n in stride(from: 0, to: 1100, by: 37) {
      XCTAssertThrowsError(try BzImageLoader.parseHeader(Array(good.prefix(n))))
    }
  }

  /// memtest86+ as Debian ships it: syssize rounds its last paragraph up, 8 bytes past
  /// the file. QEMU and GRUB load it; so do we, with the missing bytes zero.
  func testAcceptsSyssizeRoundedUpPastTheFileAndZeroesTheRest() throws {
    var img = makeBzImage(kernelSize: 0x1000)
    img.removeLast(8)
    XCTAssertEqual(try BzImageLoader.parseHeader(img).syssizeBytes, 0x1000)
    let mem = try GuestMemory(size: 64 << 20)
    try mem.write(
      GuestPhysicalAddress(0x100_0000), bytes: [UInt8](repeating: 0xEE, count: 0x2000))
    _ = try BzImageLoader.load(img, commandLine: "", into: mem)
    let loaded = try mem.readBytes(GuestPhysicalAddress(0x100_0000), count: 0x1000)
    XCTAssertEqual(Array(loaded.prefix(0xFF8)), Array(img[1024...]))
    XCTAssertEqual(Array(loaded.suffix(8)), [UInt8](repeating: 0, count: 8))
    // A whole paragraph missing is a file cut short.
    img.removeLast(8)
    XCTAssertThrowsError(try BzImageLoader.parseHeader(img)) { e in
      guard case BootError.truncated = e else { return XCTFail("\(e)") }
    }
  }

  func testRefusesCommandLineLongerThanCmdlineSize() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let img = makeBzImage(cmdlineSize: 16)
    XCTAssertNoThrow(
      try BzImageLoader.load(img, commandLine: String(repeating: "a", count: 16), into: mem))
    XCTAssertThrowsError(
      try BzImageLoader.load(img, commandLine: String(repeating: "a", count: 17), into: mem)
    ) { e in
      XCTAssertTrue("\(e)".contains("cmdline_size"), "\(e)")
      XCTAssertTrue("\(e)".contains("17"), "\(e)")
    }
  }

  func testRefusesInitrdThatDoesNotFit() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let img = makeBzImage(initSize: 8 << 20)
    // Kernel occupies [16, 24) MiB; the firmware area takes the top 128 KiB.
    XCTAssertThrowsError(
      try BzImageLoader.load(
        img, commandLine: "", initrd: [UInt8](repeating: 1, count: 41 << 20), into: mem)
    ) { e in
      XCTAssertTrue("\(e)".contains("initrd"), "\(e)")
      guard case BootError.doesNotFit = e else { return XCTFail("\(e)") }
    }
    XCTAssertNoThrow(
      try BzImageLoader.load(
        img, commandLine: "", initrd: [UInt8](repeating: 1, count: 39 << 20), into: mem))
  }

  func testRefusesKernelThatDoesNotFit() throws {
    let mem = try GuestMemory(size: 32 << 20)
    XCTAssertThrowsError(
      try BzImageLoader.load(makeBzImage(initSize: 32 << 20), commandLine: "", into: mem)
    ) { e in
      XCTAssertTrue("\(e)".contains("init_size"), "\(e)")
    }
  }

  /// The offsets of Documentation/arch/x86/zero-page.rst and boot.rst.
  func testBootParamsOffsetsMatchTheDocumentation() {
    typealias O = BzImageLoader.Offset
    XCTAssertEqual(O.acpiRSDPAddr, 0x070)
    XCTAssertEqual(O.extRamdiskImage, 0x0C0)
    XCTAssertEqual(O.extCmdLinePtr, 0x0C8)
    XCTAssertEqual(O.e820Entries, 0x1E8)
    XCTAssertEqual(O.setupHeader, 0x1F1)
    XCTAssertEqual(O.typeOfLoader, 0x210)
    XCTAssertEqual(O.loadflags, 0x211)
    XCTAssertEqual(O.code32Start, 0x214)
    XCTAssertEqual(O.ramdiskImage, 0x218)
    XCTAssertEqual(O.ramdiskSize, 0x21C)
    XCTAssertEqual(O.cmdLinePtr, 0x228)
    XCTAssertEqual(O.initrdAddrMax, 0x22C)
    XCTAssertEqual(O.kernelAlignment, 0x230)
    XCTAssertEqual(O.xloadflags, 0x236)
    XCTAssertEqual(O.cmdlineSize, 0x238)
    XCTAssertEqual(O.payloadOffset, 0x248)
    XCTAssertEqual(O.prefAddress, 0x258)
    XCTAssertEqual(O.initSize, 0x260)
    XCTAssertEqual(O.e820Table, 0x2D0)
  }

  func testWritesBootParamsAndLongModeEntry() throws {
    let mem = try GuestMemory(size: 128 << 20)
    let acpi = try ACPITables.install(ACPIConfig(), into: mem)
    let img = makeBzImage(initSize: 4 << 20)
    let initrd = (0..<10000).map { UInt8(truncatingIfNeeded: $0) }
    let boot = try BzImageLoader.load(
      img, commandLine: "console=ttyS0 quiet", initrd: initrd, rsdp: acpi.rsdp, into: mem)
    XCTAssertEqual(boot.format, .linuxBzImage)
    XCTAssertEqual(boot.format.rawValue, "bzimage")

    // Kernel bytes at pref_address.
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(0x100_0000), count: 0x1000), Array(img[1024...]))

    let zp = LinuxBootLayout.zeroPage
    func u8(_ o: Int) throws -> UInt8 { try mem.read(GuestPhysicalAddress(zp + UInt64(o))) }
    func u32(_ o: Int) throws -> UInt32 { try mem.read(GuestPhysicalAddress(zp + UInt64(o))) }
    func u64(_ o: Int) throws -> UInt64 { try mem.read(GuestPhysicalAddress(zp + UInt64(o))) }
    XCTAssertEqual(try u32(0x202), 0x5372_6448, "setup header copied")
    XCTAssertEqual(try u32(0x238), 2047)
    XCTAssertEqual(try u8(0x210), 0xFF, "type_of_loader")
    XCTAssertEqual(try u8(0x211) & 1, 1, "LOADED_HIGH kept")
    XCTAssertEqual(try u64(0x070), acpi.rsdp, "acpi_rsdp_addr")
    let cmdPtr = UInt64(try u32(0x228))
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(cmdPtr), count: 20),
      Array("console=ttyS0 quiet".utf8) + [0])
    let rdImage = UInt64(try u32(0x218))
    XCTAssertEqual(try u32(0x21C), 10000)
    XCTAssertEqual(rdImage % 4096, 0)
    XCTAssertGreaterThanOrEqual(rdImage, 0x100_0000 + (4 << 20))
    XCTAssertLessThanOrEqual(rdImage + 10000, MemoryMap.firmwareArea(for: mem)!)
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(rdImage), count: 10000), initrd)

    // e820 equals the PC map.
    let map = MemoryMap.pc(for: mem)
    XCTAssertEqual(Int(try u8(0x1E8)), map.count)
    for (i, e) in map.enumerated() {
      let o = 0x2D0 + 20 * i
      XCTAssertEqual(try u64(o), e.base)
      XCTAssertEqual(try u64(o + 8), e.length)
      XCTAssertEqual(try u32(o + 16), e.kind.rawValue)
    }
    XCTAssertTrue(map.contains { $0.base == 0x10_0000 && $0.kind == .usable })
    XCTAssertTrue(
      map.contains { $0.base == MemoryMap.firmwareArea(for: mem)! && $0.kind == .reserved })

    // 64-bit entry state per boot.rst.
    let s = boot.initialState
    XCTAssertEqual(s.general.rip, 0x100_0000 + 0x200)
    XCTAssertEqual(s.general.rsi, zp)
    XCTAssertEqual(s.general.rflags & RFLAGS.if, 0)
    XCTAssertEqual(s.special.cs.selector, 0x10)
    XCTAssertTrue(s.special.cs.l)
    XCTAssertEqual(s.special.ds.selector, 0x18)
    XCTAssertEqual(s.special.ss.selector, 0x18)
    XCTAssertEqual(s.special.efer & EFER.lma, EFER.lma)
    XCTAssertEqual(s.special.cr0 & (CR0.pg | CR0.pe), CR0.pg | CR0.pe)
    XCTAssertEqual(s.special.cr4 & CR4.pae, CR4.pae)
    // The GDT in memory agrees with the descriptor caches: 0x10 has L=1, 0x18 is writable data.
    let gdt = s.special.gdt.base
    let cs: UInt64 = try mem.read(GuestPhysicalAddress(gdt + 0x10))
    let ds: UInt64 = try mem.read(GuestPhysicalAddress(gdt + 0x18))
    XCTAssertEqual((cs >> 53) & 1, 1)
    XCTAssertEqual((cs >> 43) & 1, 1, "code")
    XCTAssertEqual((ds >> 41) & 1, 1, "writable")
    XCTAssertEqual((ds >> 43) & 1, 0, "data")
    XCTAssertGreaterThanOrEqual(s.special.gdt.limit, 0x1F)
    // Identity map covers the kernel: PML4[0] present.
    let pml4e: UInt64 = try mem.read(GuestPhysicalAddress(s.special.cr3))
    XCTAssertEqual(pml4e & 1, 1)
  }

  func testRSDPAddressOnlyForProtocol214() throws {
    let mem = try GuestMemory(size: 64 << 20)
    _ = try BzImageLoader.load(
      makeBzImage(version: 0x020D), commandLine: "", rsdp: 0x1234_5000, into: mem)
    XCTAssertEqual(
      try mem.read(GuestPhysicalAddress(LinuxBootLayout.zeroPage + 0x70), as: UInt64.self), 0)
    _ = try BzImageLoader.load(
      makeBzImage(version: 0x020E), commandLine: "", rsdp: 0x1234_5000, into: mem)
    XCTAssertEqual(
      try mem.read(GuestPhysicalAddress(LinuxBootLayout.zeroPage + 0x70), as: UInt64.self),
      0x1234_5000)
  }

  func testPayloadBounds() {
    XCTAssertThrowsError(try BzImageLoader.extractVmlinux(makeBzImage())) { e in
      XCTAssertTrue("\(e)".contains("payload"), "\(e)")
    }
    XCTAssertThrowsError(
      try BzImageLoader.extractVmlinux(makeBzImage(payload: [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0]))
    ) { e in
      XCTAssertTrue("\(e)".contains("not LZ4"), "\(e)")
    }
  }

  // MARK: The real Debian kernel, when fetched

  func testRealDebianKernel() throws {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip(
        "Debian guest not in \(LinuxGuestImages.defaultCacheDirectory); run `swiftvmm guest fetch-linux`"
      )
    }
    let bz = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.bzImage)))
    let h = try BzImageLoader.parseHeader(bz)
    XCTAssertGreaterThanOrEqual(h.version, 0x020C)
    XCTAssertEqual(h.xloadflags & 1, 1)
    XCTAssertTrue(h.relocatable)
    print(
      "Debian \(g.kernelVersion): protocol \(h.versionString), init_size \(h.initSize >> 20) MiB, cmdline_size \(h.cmdlineSize)"
    )

    let mem = try GuestMemory(size: 256 << 20)
    let acpi = try ACPITables.install(ACPIConfig(), into: mem)
    let boot = try BzImageLoader.load(
      bz, commandLine: "console=ttyS0", initrd: [UInt8](repeating: 0, count: 1 << 20),
      rsdp: acpi.rsdp, into: mem)
    XCTAssertEqual(boot.initialState.general.rip, h.prefAddress + 0x200)
    // 64 MiB is too little for this kernel's init_size plus an initrd: a clear error.
    let small = try GuestMemory(size: 64 << 20)
    XCTAssertThrowsError(try BzImageLoader.load(bz, commandLine: "", into: small)) { e in
      XCTAssertTrue("\(e)".contains("init_size"), "\(e)")
    }
    XCTAssertThrowsError(
      try BzImageLoader.load(
        bz, commandLine: String(repeating: "x", count: Int(h.cmdlineSize) + 1), into: mem))

    // The LZ4 payload decompresses to the ELF vmlinux that fetch-linux cached.
    let elf = try BzImageLoader.extractVmlinux(bz)
    let cached = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.vmlinux)))
    XCTAssertEqual(elf.count, cached.count)
    XCTAssertTrue(elf == cached)
  }
}
