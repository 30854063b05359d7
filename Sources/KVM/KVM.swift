// Shared helpers of the KVM engine: errno naming and small host file readers.
import CKVM
import Engine

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Symbolic name and text of an errno value, e.g. "EACCES (Permission denied)".
func errnoDescription(_ code: Int32) -> String {
  let names: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
    E2BIG: "E2BIG", EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
    EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL",
    EMFILE: "EMFILE", ENOTTY: "ENOTTY", ENOSPC: "ENOSPC", ENOSYS: "ENOSYS",
    EOPNOTSUPP: "EOPNOTSUPP",
  ]
  let text = strerror(code).map { String(cString: $0) } ?? "unknown error"
  return "\(names[code] ?? "errno \(code)") (\(text))"
}

/// An `EngineError.failed` naming the ioctl (or call) and the errno it returned.
/// `result` is a CKVM return value (-errno).
func kvmFailure(_ what: String, _ result: Int32, hint: String? = nil) -> EngineError {
  var s = "\(what) failed: \(errnoDescription(-result))"
  if let hint { s += "; \(hint)" }
  return .failed(s)
}

/// Reads a small host file (procfs, sysfs) whole; nil when it cannot be read.
func readHostFile(_ path: String, limit: Int = 1 << 20) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while bytes.count < limit {
    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n < 0 && errno == EINTR { continue }
    guard n > 0 else { break }
    bytes += chunk[0..<n]
  }
  return String(decoding: bytes, as: UTF8.self)
}

func hostPathExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

func hex<T: BinaryInteger>(_ v: T) -> String { "0x" + String(v, radix: 16) }
