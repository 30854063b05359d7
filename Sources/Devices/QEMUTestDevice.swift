/// QEMU's pc-testdev (`-device pc-testdev`), which kvm-unit-tests drives: a
/// 32-bit scratch register at ports 0xE0-0xE3, a "flush page" port at 0xE4
/// (QEMU remaps the host page; nothing here caches host mappings, so it does
/// nothing), one write-only port per interrupt line at 0x2000+n (non-zero
/// raises line n, zero lowers it), and 64 KiB of RAM-like MMIO at 0xFF000000.
/// Registered only with `--qemu-compat`: a PC has no such device.
public final class QEMUTestDevice: PortIODevice, MMIODevice {
  /// Port offsets: the scratch register and flush port share one range, the
  /// IRQ ports are registered at `irqOffset`.
  public static let flushOffset: UInt16 = 4
  public static let irqOffset: UInt16 = 0x100
  public static let memorySize = 0x10000

  private var scratch: UInt32 = 0
  private var memory = [UInt8](repeating: 0, count: QEMUTestDevice.memorySize)
  private let lines: [IRQLine]

  /// `irqCount` lines, numbered from 0, on `interruptLines`.
  public init(interruptLines: InterruptLines?, irqCount: Int) {
    lines = (0..<irqCount).map { IRQLine($0, lines: interruptLines) }
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    guard offset < Self.flushOffset else { return 0 }
    let shift = UInt32(offset) * 8
    return UInt32(truncatingIfNeeded: (UInt64(scratch) >> UInt64(shift)) & allOnes(size))
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    if offset >= Self.irqOffset {
      let n = Int(offset - Self.irqOffset)
      if n < lines.count { lines[n].set(value != 0) }
    } else if offset < Self.flushOffset {
      let shift = UInt64(offset) * 8
      // Bytes past the register's end are dropped, as QEMU's 32-bit mask does.
      let mask = (allOnes(size) << shift) & 0xFFFF_FFFF
      scratch =
        UInt32(truncatingIfNeeded: (UInt64(scratch) & ~mask) | ((UInt64(value) << shift) & mask))
    }
  }

  public func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<size where offset + UInt64(i) < UInt64(memory.count) {
      v |= UInt64(memory[Int(offset) + i]) << (8 * UInt64(i))
    }
    return v
  }

  public func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    for i in 0..<size where offset + UInt64(i) < UInt64(memory.count) {
      memory[Int(offset) + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
    }
  }
}
