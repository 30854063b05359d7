import Memory
import X86

/// The PVH boot ABI (Xen's HVM direct boot, which Linux supports with CONFIG_PVH):
/// load the ELF vmlinux at its physical addresses, describe the machine in an
/// `hvm_start_info`, and enter at the XEN_ELFNOTE_PHYS32_ENTRY address in flat
/// 32-bit protected mode, paging off, with EBX pointing at the start info.
public enum PVHLoader {
  public static let startInfoMagic: UInt32 = 0x336E_C578
  /// XEN_ELFNOTE_PHYS32_ENTRY, in a note named "Xen".
  public static let phys32EntryNote: UInt32 = 18

  /// Offsets in `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).
  public enum Offset {
    public static let magic = 0x00
    public static let version = 0x04
    public static let flags = 0x08
    public static let nrModules = 0x0C
    public static let modlistPaddr = 0x10
    public static let cmdlinePaddr = 0x18
    public static let rsdpPaddr = 0x20
    public static let memmapPaddr = 0x28
    public static let memmapEntries = 0x30
    public static let size = 0x38
    /// hvm_modlist_entry: paddr, size, cmdline_paddr, reserved.
    public static let modlistEntrySize = 32
    /// hvm_memmap_table_entry: addr, size, type, reserved.
    public static let memmapEntrySize = 24
  }

  /// The 32-bit physical entry from the PHYS32_ENTRY note, if the image has one.
  public static func entryPoint(_ elf: ELFImage) -> UInt32? {
    guard
      let note = elf.notes.first(where: { $0.name == "Xen" && $0.type == phys32EntryNote }),
      note.descriptor.count >= 4
    else { return nil }
    let d = note.descriptor
    return UInt32(d[0]) | UInt32(d[1]) << 8 | UInt32(d[2]) << 16 | UInt32(d[3]) << 24
  }

  public static func isPVHImage(_ bytes: [UInt8]) -> Bool {
    guard ELFImage.isELF(bytes), let elf = try? ELFImage(bytes) else { return false }
    return entryPoint(elf) != nil
  }

  /// Loads the ELF vmlinux. `rsdp` comes from `ACPITables.install`: PVH guests
  /// do not scan for it. The command-line limit is the loader's page (16 KiB) or `commandLineLimit`.
  public static func load(
    _ bytes: [UInt8], commandLine: String, initrd: [UInt8]? = nil, rsdp: UInt64? = nil,
    commandLineLimit: Int = 2047, into memory: GuestMemory
  ) throws -> BootImage {
    let elf = try ELFImage(bytes)
    guard let entry = entryPoint(elf) else {
      throw BootError.unsupported(
        "ELF image has no XEN_ELFNOTE_PHYS32_ENTRY note; it was not built with CONFIG_PVH")
    }
    let cmd = Array(commandLine.utf8)
    try LinuxBoot.checkCommandLine(cmd, limit: commandLineLimit)
    for (i, s) in elf.segments.enumerated() where s.memorySize > 0 {
      guard s.physicalAddress + s.memorySize <= LinuxBoot.lowRAMTop(memory) else {
        throw BootError.doesNotFit(
          "vmlinux segment \(i) ends at 0x\(String(s.physicalAddress + s.memorySize, radix: 16)); guest RAM below the firmware area ends at 0x\(String(LinuxBoot.lowRAMTop(memory), radix: 16))"
        )
      }
    }
    let end = try ImageLoading.loadSegments(elf, bytes: bytes, into: memory)
    guard memory.isRAM(GuestPhysicalAddress(UInt64(entry)), length: 16),
      elf.segments.contains(where: {
        UInt64(entry) >= $0.physicalAddress && UInt64(entry) - $0.physicalAddress < $0.memorySize
      })
    else {
      throw BootError.malformed(
        "PVH entry 0x\(String(entry, radix: 16)) is not inside a loaded segment")
    }

    var placement: InitrdPlacement?
    if let initrd, !initrd.isEmpty {
      // The 32-bit start info holds 64-bit addresses, but keep the initrd below 4 GiB like bzImage.
      placement = try LinuxBoot.placeInitrd(initrd, above: end, maxEnd: 1 << 32, memory: memory)
    }

    var si = [UInt8](repeating: 0, count: Offset.size)
    func put(_ buf: inout [UInt8], _ o: Int, _ v: UInt64, _ n: Int) {
      for i in 0..<n { buf[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    put(&si, Offset.magic, UInt64(startInfoMagic), 4)
    put(&si, Offset.version, 1, 4)
    put(&si, Offset.cmdlinePaddr, LinuxBootLayout.commandLine, 8)
    if let rsdp { put(&si, Offset.rsdpPaddr, rsdp, 8) }
    if let p = placement {
      var mod = [UInt8](repeating: 0, count: Offset.modlistEntrySize)
      put(&mod, 0, p.address, 8)
      put(&mod, 8, p.size, 8)
      try memory.write(GuestPhysicalAddress(LinuxBootLayout.pvhModlist), bytes: mod)
      put(&si, Offset.nrModules, 1, 4)
      put(&si, Offset.modlistPaddr, LinuxBootLayout.pvhModlist, 8)
    }
    let map = MemoryMap.pc(for: memory)
    guard map.count <= LinuxBootLayout.pvhMemmapMax else {
      throw BootError.unsupported("memory map has \(map.count) entries; at most 128 fit")
    }
    var mm = [UInt8](repeating: 0, count: map.count * Offset.memmapEntrySize)
    for (i, e) in map.enumerated() {
      let o = i * Offset.memmapEntrySize
      put(&mm, o, e.base, 8)
      put(&mm, o + 8, e.length, 8)
      put(&mm, o + 16, UInt64(e.kind.rawValue), 4)
    }
    try memory.write(GuestPhysicalAddress(LinuxBootLayout.pvhMemmap), bytes: mm)
    put(&si, Offset.memmapPaddr, LinuxBootLayout.pvhMemmap, 8)
    put(&si, Offset.memmapEntries, UInt64(map.count), 4)
    try memory.write(GuestPhysicalAddress(LinuxBootLayout.zeroPage), bytes: si)
    try memory.write(GuestPhysicalAddress(LinuxBootLayout.commandLine), bytes: cmd + [0])

    // PVH entry state: 32-bit flat CS (execute/read) and DS/ES/SS (read/write), CR0.PE only,
    // CR4 = 0, EFER = 0, interrupts off, EBX = start info.
    let gdt = try LinuxBoot.writeGDT(memory)
    var state = CPUState()
    state.general.rip = UInt64(entry)
    state.general.rbx = LinuxBootLayout.zeroPage
    state.general.rflags = RFLAGS.fixed
    state.special = ImageLoading.flatEntry(
      code: .flatCode32(selector: 0x08), dataSelector: LinuxBootLayout.bootDS, gdt: gdt)
    let imageEnd = max(end, placement.map { $0.address + $0.size } ?? 0)
    return BootImage(format: .linuxPVH, initialState: state, imageEnd: imageEnd)
  }
}
