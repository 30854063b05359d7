import Engine
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// Pre-decoded instruction cache.
//
// The decoded forms (DecodedForms.swift: MOV/ALU/TEST/LEA r/m, Jcc/JMP/CALL/RET,
// PUSH/POP, shifts, INC/DEC, MOVZX/MOVSX, IMUL, CMOVcc/SETcc) are decoded once and cached
// by the host address of their first byte (the guest-physical location). Every hit
// re-checks the instruction's bytes against the cached copy (two 8-byte compares), so
// self-modifying and cross-modifying code (stores, DMA, alias mappings) needs no
// invalidation: a changed instruction simply misses. Anything else (other opcodes,
// LOCK/REP/0x67 prefixes, 16-bit code, instructions near a page end) goes through the
// full decoder in `step()`; a negative entry remembers that cheaply. Cached or not, a
// form is decoded by `decodeForm` and run by `runDecoded` (FormSemantics.swift).

/// Direct-mapped table of decoded instructions (bounded: `size` entries, 4 MiB).
/// Anonymous zero pages: nothing is committed until used, so creating a CPU stays
/// cheap; an all-zero entry is empty (no lookup key is 0).
struct DecodeCache {
  static let bits = 16
  static let size = 1 << bits
  static let mask = size - 1
  static let bytes = size * MemoryLayout<DecodedInsn>.stride
  let entries: UnsafeMutablePointer<DecodedInsn>
  /// The instruction `step()` decodes outside the cache (and its ModRM operand).
  let scratch: UnsafeMutablePointer<DecodedInsn>

  /// `map` reserves `bytes` of zeroed memory (nil on failure); tests inject a failing one.
  init(map: (Int) -> UnsafeMutableRawPointer? = DecodeCache.mapAnonymous) throws(EngineError) {
    assert(MemoryLayout<DecodedInsn>.stride == 64)
    guard let m = map(DecodeCache.bytes) else {
      // A host out of address space is the user's problem to hear about, not a crash.
      throw EngineError.unavailable(
        "cannot map the interpreter's \(DecodeCache.bytes >> 20) MiB decode cache: "
          + String(cString: strerror(errno)))
    }
    entries = m.bindMemory(to: DecodedInsn.self, capacity: DecodeCache.size)
    scratch = .allocate(capacity: 1)
    scratch.initialize(to: DecodedInsn())
  }

  static func mapAnonymous(_ bytes: Int) -> UnsafeMutableRawPointer? {
    let m = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    return m == UnsafeMutableRawPointer(bitPattern: -1) ? nil : m
  }

  func deallocate() {
    munmap(entries, DecodeCache.bytes)
    scratch.deallocate()
  }

  @inline(__always) static func slot(_ host: UInt) -> Int {
    Int(truncatingIfNeeded: (host ^ (host >> 13)) & UInt(mask))
  }
}

extension InterpreterCPU {
  /// `step()` through the decode cache.
  @inline(__always) func stepCached() throws(Fault) {
    let lin = linear(CS, rip)
    let tslot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    // Cached forms must lie in one page, with 16 readable bytes for the compare.
    guard tlb.xtag[tslot] == (lin & ~0xFFF) | userKey, lin & 0xFFF <= 4096 - 16 else {
      try stepFull()
      return
    }
    let hostAddr = UInt(bitPattern: tlb.xadd[tslot] &+ Int(bitPattern: UInt(lin)))
    let p = UnsafeRawPointer(bitPattern: hostAddr).unsafelyUnwrapped
    let ep = dcache.entries + DecodeCache.slot(hostAddr)
    let mode = dcMode
    let key = hostAddr | UInt(mode) &<< 56
    let w0 = p.loadUnaligned(as: UInt64.self)
    let w1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
    if ep.pointee.host != key || (w0 ^ ep.pointee.b0) & ep.pointee.m0 != 0
      || (w1 ^ ep.pointee.b1) & ep.pointee.m1 != 0
    {
      stats.decodeMisses &+= 1
      dcDecode(p, ep, mode, key)
    }
    if ep.pointee.kind == DC.none {
      try stepFull()
      return
    }
    stats.decodeHits &+= 1
    try runDecoded(UnsafePointer(ep))
  }

  /// The full decoder, kept out of line so the cached path stays small.
  @inline(never) func stepFull() throws(Fault) {
    stats.decodeUncached &+= 1
    try step()
  }

  // MARK: Decoding

  /// Decodes the instruction at `p` into `ep` (kind DC.none when not a cached form). The
  /// translator decodes through here too.
  @inline(never)
  func dcDecode(
    _ p: UnsafeRawPointer, _ ep: UnsafeMutablePointer<DecodedInsn>, _ mode: UInt8, _ host: UInt
  ) {
    var e = DecodedInsn()
    e.host = host
    e.kind = DC.none
    // A negative entry validates on the first 8 bytes.
    e.b0 = p.loadUnaligned(as: UInt64.self)
    e.m0 = ~0
    ep.pointee = e
    // 16-bit code, and code under a CS limit (every fetch checked), is not cached.
    if codeSize == 2 || mode & 0x20 != 0 { return }
    // The full decoder reads from `p`: 16 bytes lie in the page, and an instruction
    // longer than 15 bytes ends in #GP before any access beyond them.
    fetchPtr = UnsafeMutableRawPointer(mutating: p)
    fetchAvail = 15
    ipos = 0
    do {
      let b = try decodeStart()
      if rep != 0 || adSize != codeSize { return }
      // LOCK only where it is allowed (`step()` raises #UD elsewhere): Linux's spinlocks
      // and atomics are LOCK CMPXCHG, XADD and ALU on memory.
      guard try decodeForm(b, ep), !lockPrefix || ep.pointee.lockable else {
        ep.pointee = e
        return
      }
    } catch {
      ep.pointee = e
      return
    }
    let i = ipos
    ep.pointee.len = UInt8(i)
    ep.pointee.m0 = i >= 8 ? ~0 : (1 &<< UInt64(i * 8)) &- 1
    ep.pointee.m1 = i <= 8 ? 0 : (1 &<< UInt64((i - 8) * 8)) &- 1
    ep.pointee.b1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
  }
}
