// Public access to the x87/MMX/SSE state as a 512-byte FXSAVE image (64-bit
// format), for the differential tester and for snapshots.

extension InterpreterCPU {
  /// The FXSAVE image: FCW, FSW, abridged FTW, MXCSR, MXCSR_MASK, ST0-7, XMM0-15.
  /// FOP, FIP and FDP are not tracked and read as zero.
  public func fxImage() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 512)
    func put(_ off: Int, _ v: UInt64, _ n: Int) {
      for k in 0..<n { b[off + k] = UInt8(truncatingIfNeeded: v >> UInt64(8 * k)) }
    }
    put(0, UInt64(fpuCW), 2)
    put(2, UInt64(fpuSW), 2)
    put(4, UInt64(fpuTW), 1)
    put(24, UInt64(mxcsr), 4)
    put(28, 0xFFFF, 4)
    for i in 0..<8 {
      put(32 + i * 16, fpuRegs.load(fromByteOffset: i * 16, as: UInt64.self), 8)
      put(40 + i * 16, UInt64(fpuRegs.load(fromByteOffset: i * 16 + 8, as: UInt16.self)), 2)
    }
    for i in 0..<32 { put(160 + i * 8, xmm.load(fromByteOffset: i * 8, as: UInt64.self), 8) }
    return b
  }

  /// Loads an FXSAVE image (as FXRSTOR does; MXCSR reserved bits are dropped).
  public func setFXImage(_ b: [UInt8]) {
    guard b.count >= 416 else { return }
    func get(_ off: Int, _ n: Int) -> UInt64 {
      var v: UInt64 = 0
      for k in 0..<n { v |= UInt64(b[off + k]) << UInt64(8 * k) }
      return v
    }
    fpuCW = UInt16(truncatingIfNeeded: get(0, 2)) & 0x1F3F | 0x40  // as FXRSTOR: bit 6 reads 1
    fpuSW = UInt16(truncatingIfNeeded: get(2, 2))
    fpuTW = UInt8(truncatingIfNeeded: get(4, 1))
    mxcsr = UInt32(truncatingIfNeeded: get(24, 4)) & 0xFFFF
    for i in 0..<8 {
      fpuRegs.storeBytes(of: get(32 + i * 16, 8), toByteOffset: i * 16, as: UInt64.self)
      fpuRegs.storeBytes(of: get(40 + i * 16, 8), toByteOffset: i * 16 + 8, as: UInt64.self)
    }
    for i in 0..<32 {
      xmm.storeBytes(of: get(160 + i * 8, 8), toByteOffset: i * 8, as: UInt64.self)
    }
  }
}
