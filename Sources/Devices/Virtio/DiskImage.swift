import CHostIO

#if canImport(Glibc)
  import Glibc
#endif

public enum DiskImageError: Error, Equatable, CustomStringConvertible {
  case cannotOpen(path: String, reason: String)
  case notAFile(String)
  case locked(String)
  case tooSmall(String)

  public var description: String {
    switch self {
    case .cannotOpen(let p, let r): return "cannot open disk image \(p): \(r)"
    case .notAFile(let p): return "disk image \(p) is not a regular file or block device"
    case .locked(let p):
      return "disk image \(p) is in use by another process (it holds a lock on it)"
    case .tooSmall(let p): return "disk image \(p) is smaller than one 512-byte sector"
    }
  }
}

/// A raw disk image file: positioned vectored I/O, fsync, and hole punching
/// or zeroing where the file system supports them. An advisory lock (flock)
/// refuses a second writer, as QEMU does: read-write takes it exclusively,
/// read-only shares it with other readers.
public final class DiskImage {
  public let path: String
  public let readOnly: Bool
  /// Size in bytes, rounded down to whole sectors.
  public let size: UInt64
  public let canPunchHoles: Bool
  public let canZeroRanges: Bool
  private let fd: Int32

  public static let sectorSize: UInt64 = 512

  public init(path: String, readOnly: Bool) throws(DiskImageError) {
    self.path = path
    self.readOnly = readOnly
    let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
    guard fd >= 0 else {
      throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
    }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFBLK
    else {
      close(fd)
      throw .notAFile(path)
    }
    guard flock(fd, (readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 else {
      close(fd)
      throw .locked(path)
    }
    var bytes = UInt64(st.st_size)
    if st.st_mode & S_IFMT == S_IFBLK {
      let end = lseek(fd, 0, SEEK_END)
      bytes = end > 0 ? UInt64(end) : 0
    }
    let size = bytes / DiskImage.sectorSize * DiskImage.sectorSize
    guard size > 0 else {
      close(fd)
      throw .tooSmall(path)
    }
    self.fd = fd
    self.size = size
    // Probe past the end of the file, where KEEP_SIZE touches no data.
    if readOnly || st.st_mode & S_IFMT != S_IFREG {
      canPunchHoles = false
      canZeroRanges = false
    } else {
      let probe = (bytes + 4096 * 16) & ~4095
      canPunchHoles = DiskImage.fallocate(fd, CHOSTIO_PUNCH_HOLE, probe, 4096)
      canZeroRanges = DiskImage.fallocate(fd, CHOSTIO_ZERO_RANGE, probe, 4096)
      // Zero-range may have allocated blocks there; give them back.
      if canZeroRanges && canPunchHoles {
        _ = DiskImage.fallocate(fd, CHOSTIO_PUNCH_HOLE, probe, 4096)
      }
    }
  }

  deinit { close(fd) }

  /// Reads into `pieces` from `offset`; false on an I/O error or a short file.
  public func read(at offset: UInt64, into pieces: [UnsafeMutableRawBufferPointer]) -> Bool {
    transfer(offset, pieces) { fd, iov, n, off in preadv(fd, iov, n, off) }
  }

  /// Writes `pieces` at `offset`; false on an I/O error (or a read-only image).
  public func write(at offset: UInt64, from pieces: [UnsafeMutableRawBufferPointer]) -> Bool {
    guard !readOnly else { return false }
    return transfer(offset, pieces) { fd, iov, n, off in pwritev(fd, iov, n, off) }
  }

  public func flush() -> Bool {
    readOnly || fsync(fd) == 0
  }

  /// Deallocates [offset, offset+length); reads return zeros afterwards.
  public func punchHole(at offset: UInt64, length: UInt64) -> Bool {
    guard canPunchHoles else { return false }
    return DiskImage.fallocate(fd, CHOSTIO_PUNCH_HOLE, offset, length)
  }

  /// Zeroes [offset, offset+length), unmapping when allowed and possible.
  public func writeZeroes(at offset: UInt64, length: UInt64, unmap: Bool) -> Bool {
    if unmap && punchHole(at: offset, length: length) { return true }
    guard canZeroRanges else { return punchHole(at: offset, length: length) }
    return DiskImage.fallocate(fd, CHOSTIO_ZERO_RANGE, offset, length)
  }

  /// fallocate with KEEP_SIZE: the image never grows.
  private static func fallocate(_ fd: Int32, _ mode: Int, _ offset: UInt64, _ length: UInt64)
    -> Bool
  {
    guard offset <= UInt64(Int64.max), length <= UInt64(Int64.max) - offset else { return false }
    let m = Int32(mode | Int(CHOSTIO_KEEP_SIZE))
    while true {
      if chostio_fallocate(fd, m, off_t(offset), off_t(length)) == 0 { return true }
      if errno != EINTR { return false }
    }
  }

  /// Runs vectored I/O until every byte moved, resuming after short transfers.
  private func transfer(
    _ offset: UInt64, _ pieces: [UnsafeMutableRawBufferPointer],
    _ op: (Int32, UnsafePointer<iovec>, Int32, off_t) -> Int
  ) -> Bool {
    var iov = pieces.filter { $0.count > 0 }.map {
      iovec(iov_base: $0.baseAddress, iov_len: $0.count)
    }
    var first = 0
    var position = offset
    while first < iov.count {
      let n = min(iov.count - first, 1024)
      let done = iov.withUnsafeBufferPointer {
        op(fd, $0.baseAddress! + first, Int32(n), off_t(position))
      }
      if done < 0 {
        if errno == EINTR { continue }
        return false
      }
      if done == 0 { return false }
      position += UInt64(done)
      var left = done
      while left > 0 && first < iov.count {
        if left >= iov[first].iov_len {
          left -= iov[first].iov_len
          first += 1
        } else {
          iov[first].iov_base = iov[first].iov_base! + left
          iov[first].iov_len -= left
          left = 0
        }
      }
    }
    return true
  }
}
