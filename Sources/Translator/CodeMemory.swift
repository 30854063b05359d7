import Glibc

/// Memory for generated code, W^X: one memfd mapped twice, a writable view where code is
/// written and an executable view it runs from. No page is ever writable and executable
/// in the same mapping. Space is handed out bump-style; when it runs out the owner
/// flushes every translation and calls `reset()` (a bounded code cache).
public final class CodeMemory {
  public let capacity: Int
  /// Where code is written.
  let writable: UnsafeMutableRawPointer
  /// Where the same bytes execute.
  public let executable: UnsafeRawPointer
  public private(set) var used = 0
  /// Times the cache filled up and was emptied.
  public private(set) var resets: UInt64 = 0

  public enum Failure: Error, CustomStringConvertible {
    case unavailable(String)
    public var description: String {
      switch self {
      case .unavailable(let s): return "cannot allocate code memory: \(s)"
      }
    }
  }

  /// `capacity` is rounded up to whole pages.
  public init(capacity: Int) throws(Failure) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let size = (max(capacity, page) + page - 1) / page * page
    // memfd_create is not in Swift's Glibc module; glibc exports it, so look it up.
    typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32
    guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "memfd_create") else {
      throw .unavailable("memfd_create not found")
    }
    let memfd = unsafeBitCast(sym, to: MemfdCreate.self)
    let fd = memfd("swiftvmm-code", 1 /* MFD_CLOEXEC */)
    guard fd >= 0 else { throw .unavailable("memfd_create: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(size)) == 0 else {
      throw .unavailable("ftruncate: \(String(cString: strerror(errno)))")
    }
    guard let w = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), w != MAP_FAILED
    else { throw .unavailable("mmap (write view): \(String(cString: strerror(errno)))") }
    guard let x = mmap(nil, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0), x != MAP_FAILED
    else {
      munmap(w, size)
      throw .unavailable("mmap (exec view): \(String(cString: strerror(errno)))")
    }
    self.capacity = size
    writable = w
    executable = UnsafeRawPointer(x)
  }

  deinit {
    munmap(writable, capacity)
    munmap(UnsafeMutableRawPointer(mutating: executable), capacity)
  }

  public var free: Int { capacity - used }

  /// Where the next `install` puts its code, if it fits.
  public var nextAddress: UnsafeRawPointer { executable.advanced(by: (used + 15) & ~15) }

  /// Copies `code` in and returns where it executes, or nil when it does not fit (the
  /// caller then flushes its translations and calls `reset()`). Entries are 16-byte aligned.
  public func install(_ code: [UInt8]) -> UnsafeRawPointer? {
    let start = (used + 15) & ~15
    guard start + code.count <= capacity else { return nil }
    code.withUnsafeBytes {
      writable.advanced(by: start).copyMemory(from: $0.baseAddress!, byteCount: code.count)
    }
    used = start + code.count
    return executable.advanced(by: start)
  }

  /// Rewrites bytes already installed (chaining patches a jump), given the executable address.
  /// Only a 4-byte-aligned rel32 is patched by a single aligned store, so a running thread sees
  /// the old or the new target, never a mix.
  public func patch(at address: UnsafeRawPointer, _ bytes: [UInt8]) {
    let offset = address - executable
    precondition(offset >= 0 && offset + bytes.count <= used, "patch outside installed code")
    bytes.withUnsafeBytes {
      writable.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: bytes.count)
    }
  }

  /// Forgets every installed block (the caller has dropped all pointers into it).
  public func reset() {
    used = 0
    resets &+= 1
  }

  /// True if an address lies in the executable view's installed code.
  public func contains(_ p: UnsafeRawPointer) -> Bool {
    p >= executable && p < executable + used
  }
}
