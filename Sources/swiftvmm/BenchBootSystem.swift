import Boot
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// `bench boot --system`: seconds from start to the serial login prompt of the Debian
/// system image (systemd on /dev/vda), on the interpreter, the translator and QEMU TCG, each on a fresh sparse copy
/// of the same image with the same kernel, initramfs and command line.
extension BenchBoot {
  /// What the serial getty prints, automatic login or not.
  static let loginMarker = " login: "

  /// The figures as a JSON object, or nil when the image is missing (said on stdout).
  func benchSystem(guest: LinuxGuestImages, cache dir: String, memoryMiB: UInt64) throws
    -> [String: Any]?
  {
    let image = dir + "/" + DebianRootfs.imageName
    guard FileManager.default.fileExists(atPath: image) else {
      print("Debian system: no \(image); build it with `sudo swiftvmm guest fetch-rootfs`")
      return nil
    }
    let work = NSTemporaryDirectory() + "swiftvmm-bench-system-\(getpid())"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let initrd = work + "/initrd.cpio"
    try Data(
      StandardInitramfs.build(
        guest: guest,
        initScript: DebianRootfs.rootInitScript(moduleList: StandardInitramfs.moduleListPath),
        gzip: false)
    ).write(to: URL(fileURLWithPath: initrd))
    // no_timer_check: on a loaded host QEMU TCG's first timer check can fail and panic.
    let cmdline = "console=ttyS0 panic=-1 quiet no_timer_check"
    let disk = work + "/debian.ext4"
    func freshCopy() throws {
      try? FileManager.default.removeItem(atPath: disk)
      let cp = Process()
      cp.executableURL = URL(fileURLWithPath: "/bin/cp")
      cp.arguments = ["--sparse=always", image, disk]
      try cp.run()
      cp.waitUntilExit()
      guard cp.terminationStatus == 0 else { throw BenchError.cannotStart("cp \(image)") }
    }

    var doc: [String: Any] = [:]
    var qemuTimes: [Double] = []
    if let qemu = BenchMeasure.qemuPath {
      for _ in 0..<runs {
        try freshCopy()
        let (t, tail) = timeToMarker(
          qemu,
          [
            "-accel", "tcg", "-m", "\(memoryMiB)M", "-display", "none", "-serial", "stdio",
            "-no-reboot", "-nic", "none", "-kernel", guest.bzImage, "-initrd", initrd,
            "-append", cmdline, "-drive", "file=\(disk),format=raw,if=virtio",
          ])
        guard let t else {
          print("Debian system, QEMU TCG: no login prompt\n\(tail)")
          qemuTimes = []
          break
        }
        qemuTimes.append(t)
      }
    } else {
      print("Debian system, QEMU TCG: qemu-system-x86_64 not installed")
    }
    let qemu = median(qemuTimes)
    if let qemu {
      print(BenchSupport.pad("Debian system to login, QEMU TCG", 36) + "\(fmt(qemu)) s")
      doc["qemuSeconds"] = qemu
    }
    var interpreterSeconds: Double?
    for engine in Self.engines {
      var ours: [Double] = []
      for _ in 0..<runs {
        try freshCopy()
        let (t, tail) = timeToMarker(
          Bundle.main.executablePath ?? CommandLine.arguments[0],
          [
            "linux", "--root", "--engine", engine.rawValue, "--disk", disk, "--memory",
            "\(memoryMiB)M", "--cmdline", "no_timer_check",
          ])
        guard let t else {
          print("Debian system, SwiftVMM \(engine.rawValue): no login prompt\n\(tail)")
          ours = []
          break
        }
        ours.append(t)
      }
      guard let t = median(ours) else { continue }
      var line = BenchSupport.pad("Debian system to login, \(engine.rawValue)", 36) + "\(fmt(t)) s"
      if let qemu { line += "   \(fmt(t / qemu, 1))x QEMU" }
      if let base = interpreterSeconds, engine != .interpreter {
        line += "   \(fmt(t / base, 2))x interpreter"
      }
      if engine == .interpreter { interpreterSeconds = t }
      print(line)
      doc[engine.rawValue + "Seconds"] = t
      // The interpreter's figure keeps its old key for earlier JSON readers.
      if engine == .interpreter { doc["seconds"] = t }
    }
    return doc
  }

  /// Wall seconds from starting `exe` until its output shows the login marker (then it
  /// is killed), or nil and the output's tail when it exits or 30 minutes pass first.
  func timeToMarker(_ exe: String, _ args: [String]) -> (Double?, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let start = DispatchTime.now().uptimeNanoseconds
    do { try p.run() } catch { return (nil, "cannot start \(exe): \(error)") }
    let watchdog = DispatchWorkItem { kill(p.processIdentifier, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + 1800, execute: watchdog)
    defer { watchdog.cancel() }
    // Only the last few KiB are kept: the marker is near the end of what was read.
    var tail = Data()
    let marker = Data(Self.loginMarker.utf8)
    while true {
      let d = pipe.fileHandleForReading.availableData
      if d.isEmpty { break }
      tail = (tail + d).suffix(8192)
      if tail.range(of: marker) != nil {
        let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        return (secs, "")
      }
    }
    p.waitUntilExit()
    return (nil, String(decoding: tail.suffix(2000), as: UTF8.self))
  }
}
