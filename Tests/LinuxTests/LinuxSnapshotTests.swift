import Boot
import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

/// Snapshots of a Linux guest (Debian kernel, busybox initramfs): a deterministic boot
/// stopped mid-way and restored matches a boot that never stopped, and a shell saved
/// at its prompt answers a command in a new process. Release builds only.
final class LinuxSnapshotTests: XCTestCase {
  func guest() throws -> LinuxGuestImages {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
    }
    #if DEBUG
      throw XCTSkip("needs a release build (scripts/test): the debug interpreter is too slow")
    #else
      return g
    #endif
  }

  func run(_ m: Machine, _ c: ConsoleOutput) -> (MachineOutcome, [UInt8], UInt64) {
    let o = m.run()
    return (o, c.captured, m.statistics()["instructions"] ?? 0)
  }

  /// --deterministic: snapshot at instruction N in the middle of the boot, restore in
  /// a fresh machine: byte-identical console output and the same instruction count.
  func testDeterministicBootSnapshotMidBootIsIdentical() throws {
    let g = try guest()
    let initrd = try StandardInitramfs.build(
      guest: g, initScript: StandardInitramfs.initScript(commands: "echo sum=$((6 * 7))"),
      gzip: false)
    var c = MachineConfig(
      kernel: [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage))), kernelName: "vmlinuz",
      engine: .interpreter)
    c.initrd = initrd
    c.commandLine = "console=ttyS0 panic=-1"
    c.memorySize = 256 << 20
    c.cpuid = try CPUIDPolicy.named("kvm")
    c.deterministic = true
    c.timeout = 900

    let c1 = ConsoleOutput(capturing: ())
    let whole = run(try Machine(config: c, console: c1), c1)
    XCTAssertEqual(whole.0, .powerOff, String(decoding: whole.1.suffix(2000), as: UTF8.self))
    XCTAssertTrue(c1.capturedText.contains("sum=42"))

    // Mid-boot: timers, interrupts and the UART are all busy.
    let at = whole.2 / 2
    let c2 = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: c2)
    m.stopAtInstruction = at
    let first = run(m, c2)
    XCTAssertEqual(first.0, .instructionStop(at))
    let path = FileManager.default.temporaryDirectory
      .appendingPathComponent("linux-mid-boot-\(getpid()).snap").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let saved = try m.saveSnapshot(to: path)
    print(
      "linux mid-boot snapshot at \(at) of \(whole.2) instructions: \(saved.bytes) bytes, \(saved.pagesStored) of \(saved.pagesTotal) pages, saved in \(saved.seconds) s"
    )

    let c3 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, timeout: 900, console: c3)
    let rest = run(r, c3)
    XCTAssertEqual(rest.0, whole.0)
    XCTAssertEqual(rest.2, whole.2, "final instruction count")
    XCTAssertEqual(first.1 + rest.1, whole.1, "console output differs")
  }

  /// The shell at its prompt, saved with the console's escape-s; a new process
  /// restores it and runs a typed command. Prints the save and restore figures.
  func testShellPromptRestoredInANewProcessAnswersACommand() throws {
    _ = try guest()
    guard FileManager.default.isExecutableFile(atPath: GuestImages.swiftvmmBinary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner")
    }
    let snap = FileManager.default.temporaryDirectory
      .appendingPathComponent("linux-prompt-\(getpid()).snap").path
    defer { try? FileManager.default.removeItem(atPath: snap) }

    func start(_ args: [String]) throws -> (Process, Pipe, Transcript) {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
      p.arguments = args
      let input = Pipe()
      let output = Pipe()
      p.standardInput = input
      p.standardOutput = output
      p.standardError = output
      let t = Transcript()
      output.fileHandleForReading.readabilityHandler = { t.append($0.availableData) }
      try p.run()
      return (p, input, t)
    }
    func waitFor(_ s: String, in t: Transcript, _ p: Process, seconds: Double) -> Bool {
      let end = Date().addingTimeInterval(seconds)
      while Date() < end {
        if t.snapshot.contains(s) { return true }
        if !p.isRunning { return t.snapshot.contains(s) }
        usleep(100_000)
      }
      return false
    }

    let (p1, in1, t1) = try start([
      "linux", "--engine", "interpreter", "--cpuid", "kvm", "--memory", "512M", "--snapshot-file",
      snap,
    ])
    defer { if p1.isRunning { p1.terminate() } }
    XCTAssertTrue(
      waitFor("Type 'poweroff' to stop.", in: t1, p1, seconds: 600),
      "no banner:\n\(t1.snapshot.suffix(2000))")
    XCTAssertTrue(waitFor("# ", in: t1, p1, seconds: 120), "no prompt")
    sleep(1)  // the shell is idle at its prompt
    in1.fileHandleForWriting.write(Data([0x01, UInt8(ascii: "s")]))
    XCTAssertTrue(
      waitFor("saved snapshot", in: t1, p1, seconds: 120),
      "not saved:\n\(t1.snapshot.suffix(2000))")
    in1.fileHandleForWriting.write(Data([0x01, UInt8(ascii: "x")]))
    p1.waitUntilExit()
    // Lines end in CR LF on the console ("\r\n" is one Character: split on newlines).
    let saveLine =
      t1.snapshot.components(separatedBy: .newlines).first { $0.contains("saved snapshot") } ?? ""

    let (p2, in2, t2) = try start(["restore", snap])
    defer { if p2.isRunning { p2.terminate() } }
    XCTAssertTrue(
      waitFor("restored", in: t2, p2, seconds: 120), "not restored:\n\(t2.snapshot.suffix(2000))")
    in2.fileHandleForWriting.write(Data("echo restored-$((40 + 2))\n".utf8))
    XCTAssertTrue(
      waitFor("restored-42", in: t2, p2, seconds: 120),
      "no answer after restore:\n\(t2.snapshot.suffix(2000))")
    in2.fileHandleForWriting.write(Data("poweroff\n".utf8))
    p2.waitUntilExit()
    XCTAssertEqual(p2.terminationStatus, 0, t2.snapshot.suffix(2000).description)
    let restoreLine =
      t2.snapshot.components(separatedBy: .newlines).first { $0.contains("restored /") } ?? ""
    print(
      "512 MiB Linux at its prompt: \(saveLine.trimmingCharacters(in: .whitespacesAndNewlines)); \(restoreLine.trimmingCharacters(in: .whitespacesAndNewlines))"
    )
  }
}
