import ArgumentParser
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The process exit statuses the CLI itself chooses (sysexits.h values).
/// A finished VM exits with `MachineOutcome.exitStatus` instead (0, odd, 2, 4, 130).
enum ExitStatus: Int32 {
  /// Bad command-line usage: unknown option or subcommand, bad or contradictory values.
  case usage = 64
  /// Unusable input: a missing or malformed kernel, initrd or CPUID policy file.
  case unusableInput = 66
  /// Fetching the Debian guest failed (network, apt-get).
  case fetchFailed = 69
  /// An internal error of SwiftVMM.
  case `internal` = 70
  /// An output file (--stats, --json, --svg, initramfs --output) cannot be created or written.
  case cannotCreateOutput = 73
  /// The command needs privileges it does not have (guest fetch-rootfs without root).
  case needsRoot = 77
}

/// Prints a one-line error and exits with `status`.
func fail(_ message: String, status: ExitStatus) -> Never {
  FileHandle.standardError.write(Data("swiftvmm: \(message)\n".utf8))
  exit(status.rawValue)
}

extension ParsableCommand {
  /// A usage error found after parsing: the message with this subcommand's own usage, status 64.
  static func usageError(_ message: String) -> Never {
    let usage = SwiftVMMCommand.usageString(for: Self.self)
    // "swiftvmm bench boot [--cache <cache>] ...": the words before the first option.
    let path = usage.split(separator: " ").prefix { !"[<-".contains($0.first!) }.joined(
      separator: " ")
    let text = """
      Error: \(message)
      Usage: \(usage)
        See '\(path) --help' for more information.

      """
    FileHandle.standardError.write(Data(text.utf8))
    Foundation.exit(ExitStatus.usage.rawValue)
  }
}

/// The one way the CLI writes files, so every failure reads
/// "cannot write PATH: REASON" and exits 73.
enum OutputFile {
  /// Refuses, before a run, a path that cannot be written, so a long run is not wasted.
  static func checkWritable(_ path: String, what: String) {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
      if isDir.boolValue {
        fail("\(what): cannot write \(path): Is a directory", status: .cannotCreateOutput)
      }
      if access(path, W_OK) != 0 { failErrno(path, what: what) }
      return
    }
    // Create and remove it: the only reliable test of the directory's permissions.
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    if fd < 0 { failErrno(path, what: what) }
    close(fd)
    unlink(path)
  }

  /// Writes `bytes` to `path` (created or truncated); on failure, a one-line error and status 73.
  static func write(_ bytes: [UInt8], to path: String, what: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if fd < 0 { failErrno(path, what: what) }
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
      if n < 0 {
        if errno == EINTR { continue }
        let e = errno
        close(fd)
        failErrno(path, what: what, errno: e)
      }
      done += n
    }
    if close(fd) != 0 { failErrno(path, what: what) }
  }

  static func write(_ text: String, to path: String, what: String) {
    write(Array(text.utf8), to: path, what: what)
  }

  private static func failErrno(_ path: String, what: String, errno e: Int32 = errno) -> Never {
    fail(
      "\(what): cannot write \(path): \(String(cString: strerror(e)))", status: .cannotCreateOutput)
  }
}
