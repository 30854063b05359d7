#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Decompressor for the LZ4 *legacy* frame format, the one `lz4 -l` writes and
/// the Linux build uses for `CONFIG_KERNEL_LZ4` payloads:
/// magic 0x184C2102, then blocks of (u32 compressed size, LZ4 block) that each
/// expand to at most 8 MiB. A repeated magic (concatenated streams) is skipped.
public enum LZ4 {
  public static let legacyMagic: UInt32 = 0x184C_2102
  static let legacyBlockSize = 8 << 20

  /// Decodes a whole legacy stream. `expectedSize`, if given, must match the output.
  public static func decompressLegacy(_ input: ArraySlice<UInt8>, expectedSize: Int? = nil) throws
    -> [UInt8]
  {
    let bytes = Array(input)
    func u32(_ o: Int) -> UInt32 {
      UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(
        bytes[o + 3])
        << 24
    }
    guard bytes.count >= 4, u32(0) == legacyMagic else {
      throw BootError.malformed("not an LZ4 legacy stream (magic 0x184C2102 missing)")
    }
    var out: [UInt8] = []
    if let e = expectedSize { out.reserveCapacity(e) }
    var pos = 4
    while pos < bytes.count {
      guard bytes.count - pos >= 4 else {
        throw BootError.truncated("LZ4 block size at offset \(pos)")
      }
      let size = u32(pos)
      pos += 4
      if size == legacyMagic { continue }
      // A block never exceeds LZ4_compressBound(8 MiB).
      guard size > 0, size <= UInt32(legacyBlockSize + legacyBlockSize / 255 + 16) else {
        throw BootError.malformed("LZ4 block of \(size) bytes at offset \(pos - 4)")
      }
      guard Int(size) <= bytes.count - pos else {
        throw BootError.truncated(
          "LZ4 block at offset \(pos - 4) needs \(size) bytes, \(bytes.count - pos) left")
      }
      let start = out.count
      // Each input byte expands to at most 255 output bytes; do not zero 8 MiB for a tiny block.
      let room = min(legacyBlockSize, Int(size) * 255 + 16)
      out.append(contentsOf: [UInt8](repeating: 0, count: room))
      let produced = try bytes.withUnsafeBufferPointer { src in
        try out.withUnsafeMutableBufferPointer { dst in
          try decodeBlock(
            UnsafeBufferPointer(rebasing: src[pos..<(pos + Int(size))]),
            into: UnsafeMutableBufferPointer(rebasing: dst[start...]))
        }
      }
      out.removeLast(room - produced)
      pos += Int(size)
    }
    if let e = expectedSize, e != out.count {
      throw BootError.malformed("LZ4 stream decoded to \(out.count) bytes; the header says \(e)")
    }
    return out
  }

  /// Decodes one raw LZ4 block; returns the number of bytes written. Every length is
  /// checked against both buffers, so corrupt input throws instead of overrunning.
  public static func decodeBlock(
    _ src: UnsafeBufferPointer<UInt8>, into dst: UnsafeMutableBufferPointer<UInt8>
  ) throws -> Int {
    guard let s = src.baseAddress, let d = dst.baseAddress else { return 0 }
    let sEnd = src.count
    let dEnd = dst.count
    var i = 0
    var o = 0
    func corrupt(_ what: String) -> BootError {
      BootError.malformed("LZ4 block is corrupt: \(what) at input offset \(i)")
    }
    while i < sEnd {
      let token = Int(s[i])
      i += 1
      var lit = token >> 4
      if lit == 15 {
        while true {
          guard i < sEnd else { throw corrupt("literal length runs past the end") }
          let b = Int(s[i])
          i += 1
          lit += b
          if b != 255 { break }
        }
      }
      guard lit <= sEnd - i else { throw corrupt("literals run past the input") }
      guard lit <= dEnd - o else { throw corrupt("literals overflow the output") }
      memcpy(d + o, s + i, lit)
      i += lit
      o += lit
      if i == sEnd { break }  // the last sequence has literals only
      guard sEnd - i >= 2 else { throw corrupt("match offset truncated") }
      let offset = Int(s[i]) | Int(s[i + 1]) << 8
      i += 2
      guard offset > 0, offset <= o else {
        throw corrupt("match offset \(offset) before the start")
      }
      var len = (token & 15) + 4
      if token & 15 == 15 {
        while true {
          guard i < sEnd else { throw corrupt("match length runs past the end") }
          let b = Int(s[i])
          i += 1
          len += b
          if b != 255 { break }
        }
      }
      guard len <= dEnd - o else { throw corrupt("match overflows the output") }
      if offset >= len {
        memcpy(d + o, d + o - offset, len)
      } else {
        // Overlapping copy repeats the last `offset` bytes.
        for k in 0..<len { d[o + k] = d[o - offset + k] }
      }
      o += len
    }
    return o
  }
}
