import Foundation

/// Locates the repository and the test guests, building them on first use.
public enum GuestImages {
  public static let repoRoot: URL = {
    var u = URL(fileURLWithPath: #filePath)
    while u.path != "/" {
      u.deleteLastPathComponent()
      if FileManager.default.fileExists(atPath: u.appendingPathComponent("Package.swift").path) {
        return u
      }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
  }()

  public static var buildDir: URL { repoRoot.appendingPathComponent("Guests/build") }

  private static let lock = NSLock()
  nonisolated(unsafe) private static var built = false

  /// Path of `Guests/build/NAME`, running `Guests/build.sh` once if anything is missing.
  public static func path(_ name: String) throws -> String {
    let p = buildDir.appendingPathComponent(name).path
    lock.lock()
    defer { lock.unlock() }
    if !built && !FileManager.default.fileExists(atPath: p) {
      let r = try run("/bin/bash", [repoRoot.appendingPathComponent("Guests/build.sh").path])
      guard r.status == 0 else {
        throw NSError(
          domain: "GuestImages", code: Int(r.status),
          userInfo: [NSLocalizedDescriptionKey: "Guests/build.sh failed: \(r.output)"])
      }
      built = true
    }
    guard FileManager.default.fileExists(atPath: p) else {
      throw NSError(
        domain: "GuestImages", code: 1,
        userInfo: [NSLocalizedDescriptionKey: "guest image \(p) missing after build"])
    }
    return p
  }

  public static func bytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: try path(name))))
  }

  /// Runs a program, returning its exit status and combined output.
  public static func run(_ exe: String, _ args: [String], timeout: Double = 120) throws -> (
    status: Int32, output: String
  ) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let timer = DispatchWorkItem { if p.isRunning { p.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    timer.cancel()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// The `swiftvmm` executable SwiftPM builds next to the test runner.
  public static var swiftvmmBinary: String {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("swiftvmm").path
  }

  /// `qemu-system-x86_64` when installed.
  public static var qemu: String? {
    for d in ["/usr/bin", "/usr/local/bin"] {
      let p = d + "/qemu-system-x86_64"
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
  }
}
