import Memory
import X86

/// Multiboot v1 (the GRUB legacy / QEMU `-kernel` protocol): finds the header,
/// loads an ELF (or a.out-kludge) image, writes the multiboot information
/// structure and returns the 32-bit protected-mode entry state.
public enum MultibootLoader {
  public static let headerMagic: UInt32 = 0x1BAD_B002
  public static let bootloaderMagic: UInt32 = 0x2BAD_B002
  static let searchLimit = 8192

  public struct Header: Equatable {
    public var offset: Int
    public var flags: UInt32
    /// a.out kludge fields (flag bit 16).
    public var headerAddress: UInt32 = 0
    public var loadAddress: UInt32 = 0
    public var loadEndAddress: UInt32 = 0
    public var bssEndAddress: UInt32 = 0
    public var entryAddress: UInt32 = 0
  }

  /// The multiboot header, if the first 8 KiB contain a valid one.
  public static func findHeader(_ bytes: [UInt8]) -> Header? {
    let r = ByteReader(bytes)
    var o = 0
    while o + 12 <= min(bytes.count, searchLimit) {
      if let magic = try? r.u32(o), magic == headerMagic,
        let flags = try? r.u32(o + 4), let sum = try? r.u32(o + 8),
        magic &+ flags &+ sum == 0
      {
        var h = Header(offset: o, flags: flags)
        if flags & (1 << 16) != 0, let f = try? (0..<5).map({ try r.u32(o + 12 + $0 * 4) }) {
          h.headerAddress = f[0]
          h.loadAddress = f[1]
          h.loadEndAddress = f[2]
          h.bssEndAddress = f[3]
          h.entryAddress = f[4]
        }
        return h
      }
      o += 4
    }
    return nil
  }

  /// Module loaded next to the kernel (multiboot `mods`), e.g. an initrd.
  public struct Module {
    public var bytes: [UInt8]
    public var name: String
    public init(bytes: [UInt8], name: String) {
      self.bytes = bytes
      self.name = name
    }
  }

  public static func load(
    _ bytes: [UInt8], commandLine: String, modules: [Module] = [], into memory: GuestMemory
  ) throws -> BootImage {
    guard let header = findHeader(bytes) else {
      throw BootError.unsupported("no multiboot header in the first 8 KiB")
    }
    // Bits 0-15 are requirements; we honour 0 (page-align modules) and 1 (memory info),
    // and ignore 2 (video mode), which only asks for a mode if one is available.
    let unknown = header.flags & 0xFFF8
    guard unknown == 0 else {
      throw BootError.unsupported(
        "multiboot header requires features 0x\(String(unknown, radix: 16)) that SwiftVMM does not provide"
      )
    }
    guard commandLine.utf8.count < BootLayout.commandLineMax else {
      throw BootError.doesNotFit(
        "command line is \(commandLine.utf8.count) bytes; the limit is \(BootLayout.commandLineMax - 1)"
      )
    }

    var entry: UInt64
    var end: UInt64
    if header.flags & (1 << 16) != 0 {
      (entry, end) = try loadAOutKludge(bytes, header, memory)
    } else {
      let elf = try ELFImage(bytes)
      guard elf.elfClass == .elf32 else {
        throw BootError.unsupported(
          "multiboot v1 needs an ELF32 image (or the a.out kludge); this is ELF64")
      }
      end = try ImageLoading.loadSegments(
        elf, bytes: bytes, into: memory, reservedEnd: BootLayout.multibootReservedEnd)
      entry = elf.entry
    }

    // Modules, page aligned, after the kernel.
    var moduleEntries: [(UInt32, UInt32, UInt32)] = []
    var next = (end + 0xFFF) & ~0xFFF
    var stringAt = BootLayout.commandLine + UInt64(commandLine.utf8.count) + 1
    // Modules go in usable RAM only: not over the firmware tables reserved at the top.
    let usable = MemoryMap.pc(for: memory).filter { $0.kind == .usable }
    for m in modules {
      let size = UInt64(m.bytes.count)
      guard
        usable.contains(where: { $0.base <= next && next + max(size, 1) <= $0.base + $0.length }),
        next + size <= 0xFFFF_FFFF
      else {
        throw BootError.doesNotFit(
          "module \(m.name) (\(size) bytes) does not fit in RAM after the kernel")
      }
      try memory.write(GuestPhysicalAddress(next), bytes: m.bytes)
      let nameBytes = Array(m.name.utf8) + [0]
      guard
        stringAt + UInt64(nameBytes.count) <= BootLayout.commandLine
          + UInt64(BootLayout.commandLineMax)
      else {
        throw BootError.doesNotFit("module names and command line exceed 4 KiB")
      }
      try memory.write(GuestPhysicalAddress(stringAt), bytes: nameBytes)
      moduleEntries.append((UInt32(next), UInt32(next + size), UInt32(stringAt)))
      stringAt += UInt64(nameBytes.count)
      next = (next + size + 0xFFF) & ~0xFFF
    }

    try writeInfo(memory, commandLine: commandLine, modules: moduleEntries)
    let gdt = try ImageLoading.writeGDT(memory)

    var state = CPUState()
    state.general.rax = UInt64(bootloaderMagic)
    state.general.rbx = BootLayout.multibootInfo
    state.general.rip = entry
    state.general.rsp = BootLayout.stackTop
    state.general.rflags = RFLAGS.fixed
    state.special = ImageLoading.flatEntry(
      code: .flatCode32(selector: BootLayout.code32Selector), dataSelector: BootLayout.dataSelector,
      gdt: gdt)
    return BootImage(format: .multiboot, initialState: state, imageEnd: next)
  }

  private static func loadAOutKludge(_ bytes: [UInt8], _ h: Header, _ memory: GuestMemory) throws
    -> (UInt64, UInt64)
  {
    // The file offset of load_addr is header offset - (header_addr - load_addr).
    guard h.headerAddress >= h.loadAddress,
      UInt64(h.headerAddress - h.loadAddress) <= UInt64(h.offset)
    else {
      throw BootError.malformed("multiboot a.out header: header_addr below load_addr")
    }
    let fileStart = h.offset - Int(h.headerAddress - h.loadAddress)
    let loadEnd =
      h.loadEndAddress == 0
      ? UInt32(truncatingIfNeeded: bytes.count - fileStart) &+ h.loadAddress : h.loadEndAddress
    guard loadEnd >= h.loadAddress else {
      throw BootError.malformed("multiboot a.out header: load_end_addr below load_addr")
    }
    let size = Int(loadEnd - h.loadAddress)
    guard fileStart + size <= bytes.count else {
      throw BootError.truncated("multiboot a.out image")
    }
    let bssEnd = max(h.bssEndAddress, loadEnd)
    guard UInt64(h.loadAddress) >= BootLayout.multibootReservedEnd else {
      throw BootError.doesNotFit(
        "image at 0x\(String(h.loadAddress, radix: 16)) overlaps the loader's area")
    }
    guard
      memory.isRAM(
        GuestPhysicalAddress(UInt64(h.loadAddress)), length: UInt64(bssEnd - h.loadAddress))
    else {
      throw BootError.doesNotFit(
        "image [0x\(String(h.loadAddress, radix: 16)), 0x\(String(bssEnd, radix: 16))) is outside guest RAM"
      )
    }
    try memory.write(
      GuestPhysicalAddress(UInt64(h.loadAddress)),
      bytes: Array(bytes[fileStart..<(fileStart + size)]))
    if bssEnd > loadEnd {
      try memory.fill(GuestPhysicalAddress(UInt64(loadEnd)), count: Int(bssEnd - loadEnd), value: 0)
    }
    return (UInt64(h.entryAddress), UInt64(bssEnd))
  }

  private static func writeInfo(
    _ memory: GuestMemory, commandLine: String, modules: [(UInt32, UInt32, UInt32)]
  ) throws {
    let mbi = GuestPhysicalAddress(BootLayout.multibootInfo)
    try memory.fill(mbi, count: 0x200, value: 0)
    let map = MemoryMap.pc(for: memory)
    // mem_upper: KiB of contiguous usable RAM from 1 MiB.
    let upper = map.first(where: { $0.base == 0x10_0000 }).map { $0.length >> 10 } ?? 0
    var flags: UInt32 = (1 << 0) | (1 << 2) | (1 << 6) | (1 << 9)
    try memory.write(mbi + 4, value: UInt32(MemoryMap.lowMemoryEnd >> 10))
    try memory.write(mbi + 8, value: UInt32(truncatingIfNeeded: min(upper, 0xFFFF_FFFF)))
    try memory.write(
      GuestPhysicalAddress(BootLayout.commandLine), bytes: Array(commandLine.utf8) + [0])
    try memory.write(mbi + 16, value: UInt32(BootLayout.commandLine))
    if !modules.isEmpty {
      flags |= 1 << 3
      let modsAt = BootLayout.multibootMemoryMap + 0x400
      for (i, m) in modules.enumerated() {
        let e = GuestPhysicalAddress(modsAt + UInt64(i * 16))
        try memory.write(e, value: m.0)
        try memory.write(e + 4, value: m.1)
        try memory.write(e + 8, value: m.2)
        try memory.write(e + 12, value: UInt32(0))
      }
      try memory.write(mbi + 20, value: UInt32(modules.count))
      try memory.write(mbi + 24, value: UInt32(modsAt))
    }
    // mmap entries: size (of the rest, 20), base, length, type.
    var o = BootLayout.multibootMemoryMap
    for e in map {
      try memory.write(GuestPhysicalAddress(o), value: UInt32(20))
      try memory.write(GuestPhysicalAddress(o + 4), value: e.base)
      try memory.write(GuestPhysicalAddress(o + 12), value: e.length)
      try memory.write(GuestPhysicalAddress(o + 20), value: e.kind.rawValue)
      o += 24
    }
    try memory.write(mbi + 44, value: UInt32(o - BootLayout.multibootMemoryMap))
    try memory.write(mbi + 48, value: UInt32(BootLayout.multibootMemoryMap))
    try memory.write(
      GuestPhysicalAddress(BootLayout.loaderName), bytes: Array("SwiftVMM".utf8) + [0])
    try memory.write(mbi + 64, value: UInt32(BootLayout.loaderName))
    try memory.write(mbi, value: flags)
  }
}
