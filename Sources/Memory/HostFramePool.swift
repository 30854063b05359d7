#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The VMM's host-physical memory: one anonymous mapping split into 4 KiB frames.
/// Guest RAM is carved from it. HPA = byte offset into the pool.
public final class HostFramePool {
  public let base: UnsafeMutableRawPointer
  public let frameCount: Int
  public private(set) var framesUsed: Int = 0
  /// Free frames, handed out from the end (a stack); order decides contiguity.
  private var freeList: [UInt32]

  public var byteSize: UInt64 { UInt64(frameCount) * pageSize }

  /// Frames are reserved but backed lazily by the host kernel (MAP_NORESERVE).
  public init(bytes: UInt64) throws {
    guard bytes > 0, bytes % pageSize == 0 else {
      throw MemoryError.invalidSize("frame pool size must be a non-zero multiple of 4 KiB")
    }
    guard bytes / pageSize <= UInt64(UInt32.max) else {
      throw MemoryError.invalidSize("frame pool of \(bytes) bytes is too large")
    }
    let p = mmap(
      nil, Int(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    guard let p, p != MAP_FAILED else {
      throw MemoryError.hostAllocationFailed(bytes: bytes, errno: errno)
    }
    base = p
    frameCount = Int(bytes / pageSize)
    freeList = (0..<UInt32(frameCount)).reversed()
  }

  deinit { munmap(base, frameCount * Int(pageSize)) }

  /// Shuffles the free list (deterministically for a seed) so that later
  /// allocations are scattered: GPA-contiguous memory becomes HPA-scattered.
  public func shuffle(seed: UInt64) {
    var state = seed | 1
    for i in stride(from: freeList.count - 1, to: 0, by: -1) {
      // xorshift64*
      state ^= state >> 12
      state ^= state << 25
      state ^= state >> 27
      let r = state &* 0x2545_F491_4F6C_DD1D
      let j = Int(r % UInt64(i + 1))
      freeList.swapAt(i, j)
    }
  }

  /// One frame.
  public func allocateFrame() throws -> HostPhysicalAddress {
    guard let f = freeList.popLast() else { throw MemoryError.poolExhausted(frames: frameCount) }
    framesUsed += 1
    return HostPhysicalAddress(UInt64(f) * pageSize)
  }

  /// `count` physically contiguous frames, taken from the lowest free run.
  /// Only valid while the free list is unshuffled (it then is a descending stack).
  public func allocateContiguous(frames count: Int) throws -> HostPhysicalAddress {
    guard count > 0, count <= freeList.count else {
      throw MemoryError.poolExhausted(frames: frameCount)
    }
    let first = freeList[freeList.count - 1]
    let last = freeList[freeList.count - count]
    guard Int(last) - Int(first) == count - 1 else {
      throw MemoryError.invalidSize(
        "frame pool is fragmented; cannot allocate \(count) contiguous frames")
    }
    freeList.removeLast(count)
    framesUsed += count
    return HostPhysicalAddress(UInt64(first) * pageSize)
  }

  public func contains(_ hpa: HostPhysicalAddress, length: UInt64 = 1) -> Bool {
    hpa.rawValue < byteSize && length <= byteSize - hpa.rawValue
  }

  /// Host pointer for a host-physical address. Caller checks `contains` first.
  @inline(__always)
  public func pointer(_ hpa: HostPhysicalAddress) -> UnsafeMutableRawPointer {
    base + Int(hpa.rawValue)
  }
}
