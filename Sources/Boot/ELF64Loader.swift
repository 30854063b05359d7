import Memory
import X86

/// Plain 64-bit ELF executables: the VMM builds the long-mode environment
/// itself (identity map of the low 4 GiB with 2 MiB pages, a flat GDT) and
/// enters at the ELF entry point in 64-bit mode with interrupts off.
public enum ELF64Loader {
  public static func load(_ bytes: [UInt8], into memory: GuestMemory) throws -> BootImage {
    let elf = try ELFImage(bytes)
    guard elf.elfClass == .elf64, elf.machine == ELFImage.machineX86_64 else {
      throw BootError.unsupported("not an x86-64 ELF64 executable")
    }
    let end = try ImageLoading.loadSegments(elf, bytes: bytes, into: memory)
    // Segments load at their physical addresses; translate a virtual entry point.
    var entry = elf.entry
    if let s = elf.segments.first(where: {
      elf.entry >= $0.virtualAddress && elf.entry - $0.virtualAddress < $0.memorySize
    }) {
      entry = s.physicalAddress + (elf.entry - s.virtualAddress)
    }
    guard entry < 0x1_0000_0000, memory.isRAM(GuestPhysicalAddress(entry)) else {
      throw BootError.malformed(
        "entry point 0x\(String(elf.entry, radix: 16)) is not inside a loaded segment in the low 4 GiB"
      )
    }
    let gdt = try ImageLoading.writeGDT(memory)
    let cr3 = try ImageLoading.writeIdentityPageTables(memory)

    var state = CPUState()
    state.general.rip = entry
    state.general.rsp = BootLayout.stackTop
    state.general.rflags = RFLAGS.fixed
    state.special = ImageLoading.longModeEntry(
      codeSelector: BootLayout.code64Selector, dataSelector: BootLayout.dataSelector, gdt: gdt,
      cr3: cr3, cr0: CR0.ne | CR0.wp)
    return BootImage(format: .elf64, initialState: state, imageEnd: end)
  }
}

/// Picks the loader for an image by its content.
public enum KernelLoader {
  /// With `acpi`, a multiboot kernel finds the ACPI tables, SMBIOS and the BIOS data
  /// area as PC firmware leaves them (as under QEMU, whose SeaBIOS runs first) when
  /// guest RAM has room for them; other images get the BIOS data area only.
  public static func load(
    _ bytes: [UInt8], commandLine: String, modules: [MultibootLoader.Module] = [],
    acpi: ACPIConfig? = nil, into memory: GuestMemory
  ) throws -> BootImage {
    guard bytes.count >= 16 else { throw BootError.truncated("only \(bytes.count) bytes") }
    if MultibootLoader.findHeader(bytes) != nil {
      var tables: ACPITables.Layout? = nil
      if let acpi, PCFirmwareTables.fits(in: memory) {
        tables = try PCFirmwareTables.install(acpi, into: memory)
      } else {
        try BIOSDataArea.install(into: memory)
      }
      var image = try MultibootLoader.load(
        bytes, commandLine: commandLine, modules: modules, into: memory)
      image.firmwareTables = tables
      return image
    }
    try BIOSDataArea.install(into: memory)
    if ELFImage.isELF(bytes) {
      let elf = try ELFImage(bytes)
      if elf.elfClass == .elf64 {
        guard modules.isEmpty else {
          throw BootError.unsupported("a plain ELF64 image cannot take an initrd")
        }
        return try ELF64Loader.load(bytes, into: memory)
      }
      throw BootError.unsupported("ELF32 image without a multiboot header")
    }
    throw BootError.unrecognizedImage
  }
}
