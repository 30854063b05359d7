/// QEMU's fw_cfg, legacy port interface only (no DMA, no file directory
/// entries): a 16-bit write to the selector port picks an item, and each byte
/// read from the data port returns the item's next byte, zeros past its end.
/// kvm-unit-tests reads the CPU count and RAM size this way; it is a QEMU
/// interface rather than a PC one, so machines register it on request.
public final class FirmwareConfig: PortIODevice {
  /// The item keys this device answers (QEMU's `FW_CFG_*` numbers).
  public enum Key: UInt16 {
    case signature = 0x00
    case id = 0x01
    case ramSize = 0x03
    case noGraphic = 0x04
    case cpuCount = 0x05
    case maxCPUs = 0x0F
    case fileDirectory = 0x19
  }
  /// Offset of the data port from the selector port.
  public static let dataOffset: UInt16 = 1
  public static let portCount: UInt16 = 2

  private let items: [UInt16: [UInt8]]
  private var selected: [UInt8] = []
  private var position = 0

  public init(ramSize: UInt64, cpuCount: Int) {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
      withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }
    let cpus = UInt16(clamping: cpuCount)
    items = [
      Key.signature.rawValue: Array("QEMU".utf8),
      // Bit 0: the traditional port interface; no DMA (bit 1).
      Key.id.rawValue: le(UInt32(1)),
      Key.ramSize.rawValue: le(ramSize),
      Key.noGraphic.rawValue: le(UInt16(1)),
      Key.cpuCount.rawValue: le(cpus),
      Key.maxCPUs.rawValue: le(cpus),
      // The directory's count is big-endian, and empty: no files.
      Key.fileDirectory.rawValue: [0, 0, 0, 0],
    ]
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    // Like QEMU, each access moves one byte whatever its width.
    guard position < selected.count else { return 0 }
    defer { position += 1 }
    return UInt32(selected[position])
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    // Byte writes to the data port are ignored (read-only items), as in QEMU.
    guard offset == 0, size >= 2 else { return }
    // Write-channel and architecture bits select nothing we hold: empty item.
    selected = items[UInt16(truncatingIfNeeded: value)] ?? []
    position = 0
  }
}
