/// Builds a tiny multiboot image (a.out kludge: header + flat code) that
/// loads at 1 MiB and starts executing `code` in 32-bit protected mode.
public enum FlatMultiboot {
  public static let loadAddress: UInt32 = 0x10_0000

  public static func image(code: [UInt8]) -> [UInt8] {
    let flags: UInt32 = 1 << 16
    let magic: UInt32 = 0x1BAD_B002
    let headerSize: UInt32 = 32
    let end = loadAddress + headerSize + UInt32(code.count)
    let fields: [UInt32] = [
      magic, flags, 0 &- (magic &+ flags),
      loadAddress,  // header_addr
      loadAddress,  // load_addr
      end,  // load_end_addr
      end,  // bss_end_addr
      loadAddress + headerSize,  // entry_addr
    ]
    var out: [UInt8] = []
    for f in fields {
      out += [UInt8(f & 0xFF), UInt8(f >> 8 & 0xFF), UInt8(f >> 16 & 0xFF), UInt8(f >> 24)]
    }
    return out + code
  }
}
