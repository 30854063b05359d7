import BenchStats
import Boot
import Engine
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// `bench boot --system`: CPU and wall seconds from start to the serial login prompt of the
/// Debian system image (systemd on /dev/vda), on the interpreter, the translator and QEMU
/// TCG, interleaved, each on a fresh sparse copy of the same image with the same kernel,
/// initramfs and command line.
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

    // Contenders: QEMU TCG, then our engines, each round booting each once (interleaved).
    var contenders: [(label: String, exe: String, args: [String])] = []
    if let qemu = BenchMeasure.qemuPath {
      contenders.append(
        (
          "QEMU TCG", qemu,
          BenchMeasure.qemuTCG + [
            "-m", "\(memoryMiB)M", "-display", "none", "-serial", "stdio",
            "-no-reboot", "-nic", "none", "-kernel", guest.bzImage, "-initrd", initrd,
            "-append", cmdline, "-drive", "file=\(disk),format=raw,if=virtio",
          ]
        ))
    } else {
      print("Debian system, QEMU TCG: qemu-system-x86_64 not installed")
    }
    for engine in Self.engines {
      contenders.append(
        (
          engine.rawValue, Bundle.main.executablePath ?? CommandLine.arguments[0],
          [
            "linux", "--root", "--engine", engine.rawValue, "--disk", disk, "--memory",
            "\(memoryMiB)M", "--cmdline", "no_timer_check",
          ]
        ))
    }
    var cpu: [[Double]] = Array(repeating: [], count: contenders.count)
    var wall: [[Double]] = Array(repeating: [], count: contenders.count)
    var failed = Set<Int>()
    for _ in 0..<repeats {
      for (i, c) in contenders.enumerated() where !failed.contains(i) {
        try freshCopy()
        let (t, cpuSeconds, tail) = timeToMarker(c.exe, c.args)
        guard let t else {
          print("Debian system, \(c.label): no login prompt\n\(tail)")
          failed.insert(i)
          continue
        }
        wall[i].append(t)
        cpu[i].append(cpuSeconds)
      }
    }
    var doc: [String: Any] = [:]
    var qemuCPU: Double?
    var interpreterCPU: Double?
    for (i, c) in contenders.enumerated() where !failed.contains(i) && !cpu[i].isEmpty {
      let s = BenchSummary(cpu[i])
      let w = BenchStats.median(wall[i])
      var line =
        BenchSupport.pad("Debian system to login, \(c.label)", 36)
        + "\(fmt(s.median)) CPU s +-\(fmt(100 * s.relativeSpread, 0))%   \(fmt(w)) wall s"
      if let q = qemuCPU { line += "   \(fmt(s.median / q, 2))x QEMU" }
      if let b = interpreterCPU { line += "   \(fmt(s.median / b, 2))x interpreter" }
      print(line)
      let key = c.label == "QEMU TCG" ? "qemu" : c.label
      doc[key] = [
        "cpuSeconds": s.median, "cpuSpreadSeconds": s.spread, "cpuRuns": cpu[i],
        "wallSeconds": w, "wallRuns": wall[i],
      ]
      if c.label == "QEMU TCG" { qemuCPU = s.median }
      if c.label == EngineKind.interpreter.rawValue { interpreterCPU = s.median }
    }
    return doc
  }

  /// Wall seconds from starting `exe` until its output shows the login marker (then it
  /// is killed) and the CPU seconds it used, or nil and the output's tail when it exits or
  /// 30 minutes pass first. The CPU time is that of this process's reaped children, which
  /// is only `exe` while it runs.
  func timeToMarker(_ exe: String, _ args: [String]) -> (Double?, Double, String) {
    func childrenCPU() -> Double {
      var u = rusage()
      getrusage(RUSAGE_CHILDREN.rawValue, &u)
      return BenchMeasure.seconds(u.ru_utime) + BenchMeasure.seconds(u.ru_stime)
    }
    let before = childrenCPU()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let start = DispatchTime.now().uptimeNanoseconds
    do { try p.run() } catch { return (nil, 0, "cannot start \(exe): \(error)") }
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
        return (secs, childrenCPU() - before, "")
      }
    }
    p.waitUntilExit()
    return (nil, 0, String(decoding: tail.suffix(2000), as: UTF8.self))
  }
}
