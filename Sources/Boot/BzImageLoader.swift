import Memory
import X86

/// Low-memory addresses the Linux loaders use (below `BootLayout.reservedEnd`,
/// clear of the GDT at 0x500 and the page tables at 0x9000-0xF000).
public enum LinuxBootLayout {
  /// boot_params (the "zero page") for bzImage; hvm_start_info and its lists for PVH.
  public static let zeroPage: UInt64 = 0x1000
  public static let pvhModlist: UInt64 = 0x1040
  public static let pvhMemmap: UInt64 = 0x1100
  public static let pvhMemmapMax = 128
  public static let commandLine: UInt64 = 0x2000
  /// Room for the command line including its NUL (0x2000-0x5FFF).
  public static let commandLineMax = 0x4000
  /// GDT selectors boot.rst requires for the 32- and 64-bit entries.
  public static let bootCS: UInt16 = 0x10
  public static let bootDS: UInt16 = 0x18
}

/// Where a loader put the initrd, for logs and tests.
public struct InitrdPlacement: Equatable {
  public var address: UInt64
  public var size: UInt64
}

/// The x86 Linux boot protocol (Documentation/arch/x86/boot.rst), entered
/// through the 64-bit entry point as Firecracker and cloud-hypervisor do: the
/// VMM skips the real-mode setup code, writes boot_params itself and starts
/// the protected-mode kernel at load address + 0x200 in long mode. A kernel
/// without the 64-bit entry (protocol before 2.12, or XLF_KERNEL_64 clear) is
/// started through the 32-bit entry at code32_start instead; one that needs its
/// real-mode setup code (before 2.02, or a zImage) needs a BIOS, which we lack.
public enum BzImageLoader {
  /// 2.02: cmd_line_ptr, so the protected-mode kernel can be entered without setup code.
  static let minimumProtocol: UInt16 = 0x0202
  /// 2.12: xloadflags and the 64-bit entry.
  static let entry64Protocol: UInt16 = 0x020C

  /// The fields of the setup header we use, by their boot.rst names.
  public struct SetupHeader: Equatable {
    public var setupSects: Int
    public var version: UInt16
    public var loadflags: UInt8
    public var xloadflags: UInt16
    public var kernelAlignment: UInt32
    public var relocatable: Bool
    public var initrdAddrMax: UInt32
    public var cmdlineSize: UInt32
    public var payloadOffset: UInt32
    public var payloadLength: UInt32
    public var prefAddress: UInt64
    public var initSize: UInt32
    /// Size of the protected-mode kernel by syssize (16-byte units): may end up to 15
    /// bytes past the file, which the loader zeroes.
    public var syssizeBytes: Int = 0
    /// File offset where the setup header ends (0x202 + the jump byte at 0x201).
    public var headerEnd: Int
    /// File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    public var kernelOffset: Int { (setupSects + 1) * 512 }
    public var versionString: String { "\(version >> 8).\(version & 0xFF)" }
    /// The 64-bit entry at load address + 0x200; otherwise the 32-bit one at the load address.
    public var has64BitEntry: Bool {
      version >= BzImageLoader.entry64Protocol && xloadflags & SetupHeader.xlfKernel64 != 0
    }

    public static let loadedHigh: UInt8 = 0x01
    public static let xlfKernel64: UInt16 = 0x01
  }

  /// Offsets in boot_params (Documentation/arch/x86/zero-page.rst and boot.rst).
  public enum Offset {
    public static let acpiRSDPAddr = 0x070
    public static let extRamdiskImage = 0x0C0
    public static let extRamdiskSize = 0x0C4
    public static let extCmdLinePtr = 0x0C8
    public static let e820Entries = 0x1E8
    public static let setupHeader = 0x1F1
    public static let setupSects = 0x1F1
    public static let syssize = 0x1F4
    public static let bootFlag = 0x1FE
    public static let header = 0x202
    public static let version = 0x206
    public static let typeOfLoader = 0x210
    public static let loadflags = 0x211
    public static let code32Start = 0x214
    public static let ramdiskImage = 0x218
    public static let ramdiskSize = 0x21C
    public static let cmdLinePtr = 0x228
    public static let initrdAddrMax = 0x22C
    public static let kernelAlignment = 0x230
    public static let relocatableKernel = 0x234
    public static let xloadflags = 0x236
    public static let cmdlineSize = 0x238
    public static let payloadOffset = 0x248
    public static let payloadLength = 0x24C
    public static let prefAddress = 0x258
    public static let initSize = 0x260
    public static let e820Table = 0x2D0
    public static let e820Max = 128
  }

  /// "HdrS" at 0x202 and 0xAA55 at 0x1FE.
  public static func isBzImage(_ bytes: [UInt8]) -> Bool {
    let r = ByteReader(bytes)
    return (try? r.u32(Offset.header)) == 0x5372_6448 && (try? r.u16(Offset.bootFlag)) == 0xAA55
  }

  public static func parseHeader(_ bytes: [UInt8]) throws -> SetupHeader {
    let r = ByteReader(bytes)
    guard bytes.count >= 0x270 else {
      throw BootError.truncated("bzImage of \(bytes.count) bytes is shorter than its setup header")
    }
    guard try r.u32(Offset.header) == 0x5372_6448 else {
      throw BootError.unsupported("no Linux setup header (\"HdrS\" missing at 0x202)")
    }
    guard try r.u16(Offset.bootFlag) == 0xAA55 else {
      throw BootError.malformed("bzImage boot_flag at 0x1FE is not 0xAA55")
    }
    let version = try r.u16(Offset.version)
    let versionString = "\(version >> 8).\(version & 0xFF)"
    let noFirmware =
      "needs its real-mode setup code and BIOS services, and SwiftVMM runs no firmware yet"
    guard version >= minimumProtocol else {
      throw BootError.unsupported(
        "Linux boot protocol \(versionString) \(noFirmware) (protocol 2.02 or later with a bzImage is entered directly)"
      )
    }
    // Fields newer than the kernel's protocol are not there (the bytes are code): their
    // documented defaults instead.
    func since<T: FixedWidthInteger>(_ v: UInt16, _ read: @autoclosure () throws -> T, else d: T)
      rethrows -> T
    { version >= v ? try read() : d }
    var sects = Int(try r.u8(Offset.setupSects))
    if sects == 0 { sects = 4 }
    var h = SetupHeader(
      setupSects: sects, version: version, loadflags: try r.u8(Offset.loadflags),
      xloadflags: try since(0x020C, r.u16(Offset.xloadflags), else: 0),
      kernelAlignment: try since(0x0205, r.u32(Offset.kernelAlignment), else: 0x10_0000),
      relocatable: try since(0x0205, r.u8(Offset.relocatableKernel), else: 0) != 0,
      initrdAddrMax: try since(0x0203, r.u32(Offset.initrdAddrMax), else: 0x37FF_FFFF),
      cmdlineSize: try since(0x0206, r.u32(Offset.cmdlineSize), else: 255),
      payloadOffset: try since(0x0208, r.u32(Offset.payloadOffset), else: 0),
      payloadLength: try since(0x0208, r.u32(Offset.payloadLength), else: 0),
      prefAddress: try since(0x020A, r.u64(Offset.prefAddress), else: 0),
      initSize: try since(0x020A, r.u32(Offset.initSize), else: 0),
      headerEnd: min(0x202 + Int(try r.u8(0x201)), 0x290, bytes.count))
    guard h.loadflags & SetupHeader.loadedHigh != 0 else {
      throw BootError.unsupported(
        "a zImage (LOADED_HIGH clear) loads below 1 MiB and \(noFirmware); use a bzImage")
    }
    guard h.kernelOffset < bytes.count else {
      throw BootError.truncated(
        "setup code claims \(h.setupSects) sectors but the file has \(bytes.count) bytes")
    }
    // syssize counts 16-byte paragraphs, rounded up (memtest86+ ends 8 bytes into its
    // last one, and QEMU and GRUB load it): a file short of a whole paragraph is cut short.
    let syssize = Int(try r.u32(Offset.syssize))
    let kernelBytes = bytes.count - h.kernelOffset
    guard syssize <= (kernelBytes + 15) / 16 else {
      throw BootError.truncated(
        "kernel is \(kernelBytes) bytes but syssize says \(syssize * 16)")
    }
    h.syssizeBytes = syssize * 16
    // Before 2.10 the kernel does not say how much memory it unpacks into; the file's
    // size is the least it needs (the initrd goes as high as it can anyway).
    if version < 0x020A { h.initSize = UInt32(clamping: kernelBytes) }
    guard h.kernelAlignment != 0, h.kernelAlignment & (h.kernelAlignment - 1) == 0 else {
      throw BootError.malformed(
        "kernel_alignment 0x\(String(h.kernelAlignment, radix: 16)) is not a power of two")
    }
    guard UInt64(h.initSize) >= UInt64(bytes.count - h.kernelOffset) else {
      throw BootError.malformed(
        "init_size 0x\(String(h.initSize, radix: 16)) is smaller than the kernel (\(bytes.count - h.kernelOffset) bytes)"
      )
    }
    return h
  }

  /// The compressed vmlinux inside the bzImage (payload_offset/payload_length, from the kernel start).
  public static func payload(_ bytes: [UInt8]) throws -> ArraySlice<UInt8> {
    let h = try parseHeader(bytes)
    let start = h.kernelOffset + Int(h.payloadOffset)
    guard h.payloadLength > 0, start <= bytes.count, Int(h.payloadLength) <= bytes.count - start
    else {
      throw BootError.truncated("payload [\(start), +\(h.payloadLength)) lies outside the bzImage")
    }
    return bytes[start..<(start + Int(h.payloadLength))]
  }

  /// Extracts the ELF vmlinux that PVH boots. Only LZ4 payloads are supported
  /// (Debian's choice). The kernel build appends the decompressed size as a u32.
  public static func extractVmlinux(_ bytes: [UInt8]) throws -> [UInt8] {
    let p = try payload(bytes)
    guard p.count >= 8 else { throw BootError.truncated("bzImage payload of \(p.count) bytes") }
    let r = ByteReader(Array(p.prefix(4)) + Array(p.suffix(4)))
    let magic = try r.u32(0)
    guard magic == LZ4.legacyMagic else {
      let m = Array(p.prefix(4)).map { String($0, radix: 16) }.joined(separator: " ")
      throw BootError.unsupported(
        "bzImage payload is not LZ4 (first bytes \(m)); only LZ4-compressed kernels can be unpacked to vmlinux"
      )
    }
    let size = Int(try r.u32(4))
    let elf = try LZ4.decompressLegacy(p.dropLast(4), expectedSize: size)
    guard ELFImage.isELF(elf) else {
      throw BootError.malformed("decompressed payload is not an ELF vmlinux")
    }
    return elf
  }

  /// Loads the bzImage and writes boot_params.
  /// - `rsdp`: the RSDP address from `ACPITables.install` (nil: the kernel scans for it).
  /// - Errors: protocol too old, command line longer than cmdline_size, kernel or initrd not fitting.
  public static func load(
    _ bytes: [UInt8], commandLine: String, initrd: [UInt8]? = nil, rsdp: UInt64? = nil,
    into memory: GuestMemory
  ) throws -> BootImage {
    let h = try parseHeader(bytes)
    let cmd = Array(commandLine.utf8)
    try LinuxBoot.checkCommandLine(cmd, limit: Int(h.cmdlineSize))

    // boot.rst: load at pref_address (a non-relocatable kernel moves itself there anyway).
    let load = h.prefAddress >= 0x10_0000 ? h.prefAddress : 0x10_0000
    // The 64-bit entry runs on our identity map of the low 4 GiB.
    guard load < 1 << 32 else {
      throw BootError.unsupported("pref_address 0x\(String(load, radix: 16)) is above 4 GiB")
    }
    let kernel = bytes[h.kernelOffset...]
    let kernelEnd = load + UInt64(h.initSize)
    let lowTop = LinuxBoot.lowRAMTop(memory)
    guard kernelEnd <= lowTop, memory.isRAM(GuestPhysicalAddress(load), length: UInt64(h.initSize))
    else {
      throw BootError.doesNotFit(
        "the kernel needs [0x\(String(load, radix: 16)), 0x\(String(kernelEnd, radix: 16))) (init_size \(h.initSize >> 20) MiB at \(load >> 20) MiB); guest RAM has \(memory.ramSize >> 20) MiB"
      )
    }
    try kernel.withUnsafeBytes { try memory.write(GuestPhysicalAddress(load), from: $0) }
    // What syssize claims beyond the file reads as zeros, as bootloaders leave it.
    let zeroEnd = min(h.syssizeBytes, Int(h.initSize))
    if zeroEnd > kernel.count {
      try memory.write(
        GuestPhysicalAddress(load + UInt64(kernel.count)),
        bytes: [UInt8](repeating: 0, count: zeroEnd - kernel.count))
    }

    var placement: InitrdPlacement?
    if let initrd {
      placement = try LinuxBoot.placeInitrd(
        initrd, above: kernelEnd, maxEnd: UInt64(h.initrdAddrMax) + 1, memory: memory)
    }

    // boot_params: zeroed, then the setup header copied from the image, then our fields.
    let zp = LinuxBootLayout.zeroPage
    var bp = [UInt8](repeating: 0, count: 4096)
    bp.replaceSubrange(
      Offset.setupHeader..<h.headerEnd, with: bytes[Offset.setupHeader..<h.headerEnd])
    func put(_ o: Int, _ v: UInt64, _ n: Int) {
      for i in 0..<n { bp[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    put(Offset.typeOfLoader, 0xFF, 1)  // undefined loader, no version
    // CAN_USE_HEAP off: the real-mode setup code does not run.
    put(Offset.loadflags, UInt64(h.loadflags & ~0x80), 1)
    put(Offset.code32Start, load, 4)
    put(Offset.cmdLinePtr, LinuxBootLayout.commandLine, 4)
    if let p = placement {
      put(Offset.ramdiskImage, p.address, 4)
      put(Offset.ramdiskSize, p.size, 4)
    }
    // boot_params.acpi_rsdp_addr exists from protocol 2.14; older kernels scan for the RSDP.
    if let rsdp, h.version >= 0x020E { put(Offset.acpiRSDPAddr, rsdp, 8) }
    let map = MemoryMap.pc(for: memory)
    guard map.count <= Offset.e820Max else {
      throw BootError.unsupported("memory map has \(map.count) entries; boot_params holds 128")
    }
    put(Offset.e820Entries, UInt64(map.count), 1)
    for (i, e) in map.enumerated() {
      let o = Offset.e820Table + i * 20
      put(o, e.base, 8)
      put(o + 8, e.length, 8)
      put(o + 16, UInt64(e.kind.rawValue), 4)
    }
    try memory.write(GuestPhysicalAddress(zp), bytes: bp)
    try memory.write(GuestPhysicalAddress(LinuxBootLayout.commandLine), bytes: cmd + [0])

    var state = CPUState()
    state.general.rsi = zp
    state.general.rsp = BootLayout.stackTop
    state.general.rflags = RFLAGS.fixed
    if h.has64BitEntry {
      // 64-bit entry (boot.rst "64-bit Boot Protocol"): long mode, identity-mapped,
      // CS = __BOOT_CS, DS/ES/SS = __BOOT_DS, interrupts off, RSI = boot_params.
      let gdt = try LinuxBoot.writeGDT(memory)
      let cr3 = try ImageLoading.writeIdentityPageTables(memory)
      state.general.rip = load + 0x200
      state.special = ImageLoading.longModeEntry(
        codeSelector: LinuxBootLayout.bootCS, dataSelector: LinuxBootLayout.bootDS, gdt: gdt,
        cr3: cr3)
    } else {
      // 32-bit entry (boot.rst "32-bit Boot Protocol"): protected mode, paging off, flat
      // __BOOT_CS (32-bit) and __BOOT_DS, at code32_start; ESI = boot_params, EBX/EBP/EDI 0.
      let gdt = try LinuxBoot.writeGDT(memory, bootCSIs32Bit: true)
      state.general.rip = load
      state.special = ImageLoading.flatEntry(
        code: .flatCode32(selector: LinuxBootLayout.bootCS), dataSelector: LinuxBootLayout.bootDS,
        gdt: gdt)
    }
    let end = max(kernelEnd, placement.map { $0.address + $0.size } ?? 0)
    return BootImage(format: .linuxBzImage, initialState: state, imageEnd: end)
  }
}

/// Pieces both Linux loaders share.
public enum LinuxBoot {
  /// Top of the first RAM region available to the kernel and initrd: the firmware
  /// area (ACPI tables) and anything above 4 GiB are excluded.
  static func lowRAMTop(_ memory: GuestMemory) -> UInt64 {
    if let f = MemoryMap.firmwareArea(for: memory) { return f }
    return memory.regions.first(where: { $0.start.rawValue == 0 }).map { min($0.end, 1 << 32) } ?? 0
  }

  static func checkCommandLine(_ cmd: [UInt8], limit: Int) throws {
    let max = min(limit, LinuxBootLayout.commandLineMax - 1)
    guard cmd.count <= max else {
      throw BootError.unsupported(
        "command line is \(cmd.count) bytes; this kernel accepts at most \(max) (cmdline_size)")
    }
    guard !cmd.contains(0) else { throw BootError.malformed("command line contains a NUL byte") }
  }

  /// Puts the initrd as high as possible: page aligned, ending at or below `maxEnd`
  /// and the firmware area, starting at or above `above`.
  static func placeInitrd(
    _ initrd: [UInt8], above: UInt64, maxEnd: UInt64, memory: GuestMemory
  ) throws -> InitrdPlacement {
    let size = UInt64(initrd.count)
    let top = min(maxEnd, lowRAMTop(memory))
    let floor = (above + 0xFFF) & ~0xFFF
    guard size > 0 else { return InitrdPlacement(address: floor, size: 0) }
    guard top > floor, size <= top - floor else {
      let room = top > floor ? top - floor : 0
      throw BootError.doesNotFit(
        "initrd of \(size) bytes (\(size >> 20) MiB) does not fit: \(room >> 20) MiB free between the kernel (ends 0x\(String(floor, radix: 16))) and 0x\(String(top, radix: 16)); give the guest more memory"
      )
    }
    let address = (top - size) & ~0xFFF
    try memory.write(GuestPhysicalAddress(address), bytes: initrd)
    return InitrdPlacement(address: address, size: size)
  }

  /// GDT for boot.rst: __BOOT_CS (0x10) a 64-bit code segment (32-bit for the 32-bit
  /// entry), __BOOT_DS (0x18) flat data; 0x08 is a flat 32-bit code segment for PVH.
  static func writeGDT(_ memory: GuestMemory, bootCSIs32Bit: Bool = false)
    throws -> DescriptorTableRegister
  {
    let entries: [UInt64] = [
      0,
      0x00CF_9A00_0000_FFFF,  // 0x08: code, D=1, 4 GiB
      bootCSIs32Bit ? 0x00CF_9A00_0000_FFFF : 0x00AF_9A00_0000_FFFF,  // 0x10: code, D=1 or L=1
      0x00CF_9200_0000_FFFF,  // 0x18: data, 4 GiB
    ]
    for (i, e) in entries.enumerated() {
      try memory.write(GuestPhysicalAddress(BootLayout.gdt + UInt64(i * 8)), value: e)
    }
    return DescriptorTableRegister(base: BootLayout.gdt, limit: UInt16(entries.count * 8 - 1))
  }
}

/// Which Linux entry to use.
public enum LinuxBootProtocol: String, Equatable, CaseIterable {
  /// bzImage, 64-bit boot protocol.
  case bzImage = "bzimage"
  /// ELF vmlinux, PVH entry (a bzImage is unpacked to its vmlinux first).
  case pvh
}

extension LinuxBoot {
  /// Recognises a Linux kernel: a bzImage, or an ELF with the PVH note.
  public static func isLinuxKernel(_ bytes: [UInt8]) -> Bool {
    BzImageLoader.isBzImage(bytes) || PVHLoader.isPVHImage(bytes)
  }

  /// The one call the VMM needs: installs the ACPI tables for `acpi` in the firmware area,
  /// then loads `kernel` (bzImage or PVH vmlinux) with the chosen protocol. The default
  /// protocol is the image's own: bzImage for a bzImage, PVH for an ELF.
  public static func load(
    _ kernel: [UInt8], commandLine: String, initrd: [UInt8]? = nil, acpi: ACPIConfig = ACPIConfig(),
    protocol proto: LinuxBootProtocol? = nil, into memory: GuestMemory
  ) throws -> (image: BootImage, acpi: ACPITables.Layout) {
    let isBz = BzImageLoader.isBzImage(kernel)
    let chosen = proto ?? (isBz ? .bzImage : .pvh)
    let tables = try PCFirmwareTables.install(acpi, into: memory)
    switch chosen {
    case .bzImage:
      guard isBz else {
        throw BootError.unsupported(
          "the bzImage protocol needs a bzImage; this is an ELF vmlinux (use PVH)")
      }
      var img = try BzImageLoader.load(
        kernel, commandLine: commandLine, initrd: initrd, rsdp: tables.rsdp, into: memory)
      img.firmwareTables = tables
      return (img, tables)
    case .pvh:
      let elf = isBz ? try BzImageLoader.extractVmlinux(kernel) : kernel
      let limit = isBz ? Int(try BzImageLoader.parseHeader(kernel).cmdlineSize) : 2047
      var img = try PVHLoader.load(
        elf, commandLine: commandLine, initrd: initrd, rsdp: tables.rsdp, commandLineLimit: limit,
        into: memory)
      img.firmwareTables = tables
      return (img, tables)
    }
  }
}
