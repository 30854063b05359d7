import Memory

/// The BIOS data area (0x400-0x4FF) and the EBDA as PC firmware (SeaBIOS) leaves them.
/// No firmware runs before our loaders, yet multiboot kernels read these fields: Xen
/// derives its low-memory trampoline and stack from the EBDA segment and base-memory size
/// and goes astray on zeros. Linux reads the EBDA segment when it scans for tables.
public enum BIOSDataArea {
  public static let base: UInt64 = 0x400

  /// Offsets from 0x400 (the IBM PC/AT BIOS data area, as SeaBIOS's `struct bios_data_area_s`).
  public enum Offset {
    public static let serialPorts = 0x00  // COM1-COM4 I/O bases, u16 each
    public static let parallelPorts = 0x08  // LPT1-LPT3, u16 each
    public static let ebdaSegment = 0x0E  // u16: EBDA address >> 4
    public static let equipment = 0x10  // u16 equipment list
    public static let baseMemoryKiB = 0x13  // u16: conventional memory below the EBDA
    public static let keyboardHead = 0x1A  // u16, offset of the keyboard ring's head
    public static let keyboardTail = 0x1C
    public static let keyboardBufferStart = 0x80  // u16
    public static let keyboardBufferEnd = 0x82
  }

  /// Equipment word bits: an x87 FPU (bit 1), 80x25 colour video (bits 5:4 = 10),
  /// and the serial port count (bits 11:9).
  static func equipment(serialPorts: Int) -> UInt16 {
    0x0002 | 0x0020 | UInt16(serialPorts & 7) << 9
  }

  /// The 256 bytes at 0x400 for this layout.
  public static func bytes(layout: PlatformLayout = PlatformLayout()) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 0x100)
    func put16(_ o: Int, _ v: UInt16) {
      b[o] = UInt8(v & 0xFF)
      b[o + 1] = UInt8(v >> 8)
    }
    put16(Offset.serialPorts, layout.com1Ports.lowerBound)
    put16(Offset.ebdaSegment, UInt16(MemoryMap.lowMemoryEnd >> 4))
    put16(Offset.equipment, equipment(serialPorts: 1))
    put16(Offset.baseMemoryKiB, UInt16(MemoryMap.lowMemoryEnd >> 10))
    // An empty keyboard ring at 0x41E-0x43D (offsets from segment 0x40).
    put16(Offset.keyboardHead, 0x1E)
    put16(Offset.keyboardTail, 0x1E)
    put16(Offset.keyboardBufferStart, 0x1E)
    put16(Offset.keyboardBufferEnd, 0x3E)
    return b
  }

  /// Writes the BDA and the EBDA's first byte (its size in KiB) into guest RAM.
  public static func install(
    into memory: GuestMemory, layout: PlatformLayout = PlatformLayout()
  ) throws {
    // A machine too small for conventional memory gets none (unit tests' tiny guests).
    guard memory.isRAM(GuestPhysicalAddress(0), length: 0xA_0000) else { return }
    try memory.write(GuestPhysicalAddress(base), bytes: bytes(layout: layout))
    let ebdaKiB = (0xA_0000 - MemoryMap.lowMemoryEnd) >> 10
    try memory.write(GuestPhysicalAddress(MemoryMap.lowMemoryEnd), bytes: [UInt8(ebdaKiB)])
  }
}
