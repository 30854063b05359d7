import Memory
import X86

/// Fixed low-memory addresses where loaders put the structures they build.
/// Below 0x10000 nothing else is loaded, so images overlapping this are refused.
public enum BootLayout {
  public static let gdt: UInt64 = 0x500
  public static let multibootInfo: UInt64 = 0x6000
  public static let multibootMemoryMap: UInt64 = 0x6200
  public static let loaderName: UInt64 = 0x6F00
  public static let commandLine: UInt64 = 0x7000
  public static let commandLineMax = 0x1000
  public static let stackTop: UInt64 = 0x8FF0
  public static let pml4: UInt64 = 0x9000
  /// PDPT at pml4+0x1000, then four page directories.
  public static let pageTablesEnd: UInt64 = 0xF000
  /// Everything below this is the loader's.
  public static let reservedEnd: UInt64 = 0x10000
  /// A multiboot boot writes only the GDT and 0x6000-0x7FFF (info, memory
  /// map, names, command line) and no page tables, so images may start here
  /// (kvm-unit-tests' `realmode` loads at 0x8000, as QEMU allows). The initial
  /// ESP may then point into the image: multiboot leaves ESP undefined.
  public static let multibootReservedEnd: UInt64 = commandLine + UInt64(commandLineMax)

  /// GDT selectors written by `writeGDT`.
  public static let code64Selector: UInt16 = 0x08
  public static let code32Selector: UInt16 = 0x10
  public static let dataSelector: UInt16 = 0x18
}

/// What a loader produces: the memory is written, and this is how the first vCPU starts.
public struct BootImage: Equatable {
  public enum Format: String, Equatable {
    case multiboot, elf64
    /// Linux bzImage through the 64-bit boot protocol; Linux ELF vmlinux through the PVH entry.
    case linuxBzImage = "bzimage"
    case linuxPVH = "pvh"
  }
  public var format: Format
  public var initialState: CPUState
  /// Highest guest-physical address used by the image (exclusive).
  public var imageEnd: UInt64
  /// The ACPI tables firmware left for the guest (`PCFirmwareTables`), if any: the VMM
  /// then provides the PM registers their FADT describes.
  public var firmwareTables: ACPITables.Layout? = nil
}

enum ImageLoading {
  /// Copies the PT_LOAD segments to their physical addresses and zeroes BSS.
  static func loadSegments(
    _ elf: ELFImage, bytes: [UInt8], into memory: GuestMemory,
    reservedEnd: UInt64 = BootLayout.reservedEnd
  ) throws -> UInt64 {
    var end: UInt64 = 0
    for (i, s) in elf.segments.enumerated() where s.memorySize > 0 {
      let start = s.physicalAddress
      guard start >= reservedEnd else {
        throw BootError.doesNotFit(
          "segment \(i) at 0x\(String(start, radix: 16)) overlaps the loader's area below 0x\(String(reservedEnd, radix: 16))"
        )
      }
      guard memory.isRAM(GuestPhysicalAddress(start), length: s.memorySize) else {
        throw BootError.doesNotFit(
          "segment \(i) [0x\(String(start, radix: 16)), 0x\(String(start + s.memorySize, radix: 16))) is outside guest RAM (\(memory.ramSize >> 20) MiB)"
        )
      }
      let from = Int(s.fileOffset)
      try bytes.withUnsafeBytes { raw in
        try memory.write(
          GuestPhysicalAddress(start),
          from: UnsafeRawBufferPointer(rebasing: raw[from..<(from + Int(s.fileSize))]))
      }
      if s.memorySize > s.fileSize {
        try memory.fill(
          GuestPhysicalAddress(start + s.fileSize), count: Int(s.memorySize - s.fileSize), value: 0)
      }
      end = max(end, start + s.memorySize)
    }
    return end
  }

  /// A flat GDT: null, 64-bit code, 32-bit code, data.
  static func writeGDT(_ memory: GuestMemory) throws -> DescriptorTableRegister {
    let entries: [UInt64] = [
      0,
      0x00AF_9A00_0000_FFFF,  // 0x08: code, L=1
      0x00CF_9A00_0000_FFFF,  // 0x10: code, D=1, 4 GiB
      0x00CF_9200_0000_FFFF,  // 0x18: data, 4 GiB
    ]
    for (i, e) in entries.enumerated() {
      try memory.write(GuestPhysicalAddress(BootLayout.gdt + UInt64(i * 8)), value: e)
    }
    return DescriptorTableRegister(base: BootLayout.gdt, limit: UInt16(entries.count * 8 - 1))
  }

  /// Identity map of the low 4 GiB with 2 MiB pages (PML4, PDPT, 4 PDs).
  static func writeIdentityPageTables(_ memory: GuestMemory) throws -> UInt64 {
    let pml4 = BootLayout.pml4
    let pdpt = pml4 + 0x1000
    let rw = PTE.present | PTE.writable
    try memory.fill(
      GuestPhysicalAddress(pml4), count: Int(BootLayout.pageTablesEnd - pml4), value: 0)
    try memory.write(GuestPhysicalAddress(pml4), value: pdpt | rw)
    for g in 0..<4 {
      let pd = pdpt + 0x1000 * UInt64(g + 1)
      try memory.write(GuestPhysicalAddress(pdpt + UInt64(g * 8)), value: pd | rw)
      for i in 0..<512 {
        let phys = (UInt64(g) << 30) | (UInt64(i) << 21)
        try memory.write(
          GuestPhysicalAddress(pd + UInt64(i * 8)), value: phys | rw | PTE.pageSize)
      }
    }
    return pml4
  }

  /// Entry registers every loader hands over: flat segments from `gdt`, no IDT,
  /// a usable TR, protected mode (`cr0` adds to PE|ET).
  static func flatEntry(
    code: SegmentRegister, dataSelector: UInt16, gdt: DescriptorTableRegister, cr0: UInt64 = 0
  ) -> SpecialRegisters {
    var s = SpecialRegisters()
    s.cs = code
    let data = SegmentRegister.flatData(selector: dataSelector)
    s.ds = data
    s.es = data
    s.fs = data
    s.gs = data
    s.ss = data
    s.tr = defaultTR
    s.gdt = gdt
    s.idt = DescriptorTableRegister(base: 0, limit: 0)
    s.cr0 = CR0.pe | CR0.et | cr0
    return s
  }

  /// Long mode on the identity map at `cr3` (paging, PAE, EFER.LME|LMA).
  static func longModeEntry(
    codeSelector: UInt16, dataSelector: UInt16, gdt: DescriptorTableRegister, cr3: UInt64,
    cr0: UInt64 = CR0.ne
  ) -> SpecialRegisters {
    var s = flatEntry(
      code: .code64(selector: codeSelector), dataSelector: dataSelector, gdt: gdt,
      cr0: CR0.pg | cr0)
    s.cr3 = cr3
    s.cr4 = CR4.pae
    s.efer = EFER.lme | EFER.lma
    return s
  }

  /// A busy 64-bit TSS descriptor cache; KVM and the interpreter want TR usable.
  static var defaultTR: SegmentRegister {
    SegmentRegister(selector: 0, base: 0, limit: 0x67, type: 0xB, s: false)
  }
}
