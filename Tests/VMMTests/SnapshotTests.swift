import Devices
import Engine
import Foundation
import KVM
import TestSupport
import X86
import XCTest

@testable import VMM

/// Snapshots: save at an exact instruction, restore in a fresh machine (on the
/// same or another engine), and compare with a run that never stopped.
final class SnapshotTests: XCTestCase {
  var dir: URL!

  override func setUpWithError() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "snapshot-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: dir)
  }

  static func config(
    _ guest: String, cmdline: String = "", engine: EngineKind, cpus: Int = 1, mmu: MMUMode? = nil
  ) throws -> MachineConfig {
    var c = MachineConfig(
      kernel: try GuestImages.bytes(guest), kernelName: guest, engine: engine)
    c.commandLine = cmdline
    c.memorySize = cpus > 1 ? 128 << 20 : 32 << 20
    c.cpus = cpus
    c.mmuMode = mmu
    c.deterministic = engine != .kvm
    c.timeout = 120
    return c
  }

  struct Run {
    var outcome: MachineOutcome
    var output: [UInt8]
    var instructions: UInt64
  }

  static func run(_ m: Machine, _ console: ConsoleOutput) -> Run {
    let o = m.run()
    return Run(
      outcome: o, output: console.captured, instructions: m.statistics()["instructions"] ?? 0)
  }

  /// Runs `guest` uninterrupted, then again stopping at instruction `at`, saving,
  /// restoring on `to` and running to the end; the two must agree byte for byte.
  func checkIdentity(
    _ guest: String, cmdline: String = "", cpus: Int = 1, mmu: MMUMode? = nil, at: UInt64,
    from: EngineKind, to: EngineKind, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let c1 = ConsoleOutput(capturing: ())
    let whole = Self.run(
      try Machine(
        config: try Self.config(guest, cmdline: cmdline, engine: from, cpus: cpus, mmu: mmu),
        console: c1), c1
    )
    guard whole.instructions > at else {
      return XCTFail(
        "\(guest) retires only \(whole.instructions) instructions", file: file, line: line)
    }

    let c2 = ConsoleOutput(capturing: ())
    let m = try Machine(
      config: try Self.config(guest, cmdline: cmdline, engine: from, cpus: cpus, mmu: mmu),
      console: c2)
    m.stopAtInstruction = at
    let first = Self.run(m, c2)
    XCTAssertEqual(first.outcome, .instructionStop(at), file: file, line: line)
    XCTAssertEqual(first.instructions, at, file: file, line: line)
    let path = dir.appendingPathComponent("\(guest)-\(at).snap").path
    let summary = try m.saveSnapshot(to: path)
    XCTAssertGreaterThan(summary.pagesStored, 0)

    let c3 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, engine: to, timeout: 120, console: c3)
    XCTAssertEqual(r.cpu.engineName, to.rawValue, file: file, line: line)
    let rest = Self.run(r, c3)
    XCTAssertEqual(rest.outcome, whole.outcome, file: file, line: line)
    XCTAssertEqual(
      String(decoding: first.output + rest.output, as: UTF8.self),
      String(decoding: whole.output, as: UTF8.self), file: file, line: line)
    // Nested and shadow tables start empty after a restore; the interpreter counts an
    // instruction an MMU event aborted and restarted, so only there the count may differ.
    if to != .kvm && from != .kvm && (mmu == nil || mmu == .direct) {
      XCTAssertEqual(rest.instructions, whole.instructions, file: file, line: line)
    }
  }

  /// Guests that exercise MSRs (syscall), the IDT and faults (exceptions), paging
  /// and mode switches, each stopped in the middle.
  static let guests: [(String, String, UInt64)] = [
    ("hello.elf", "", 5_000), ("syscall.elf", "", 30_000), ("exceptions.elf", "", 40_000),
    ("paging.elf", "", 25_000), ("modes.elf", "", 20_000),
    ("exits.elf", "exits.elf count=300", 10_000),
  ]

  func testInterpreterRoundTripIsIdentical() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .interpreter, to: .interpreter)
    }
  }

  func testTranslatorRoundTripIsIdentical() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .translator, to: .translator)
    }
  }

  /// Four vCPUs mid-way through AP start-up, locks and IPIs: every vCPU's state,
  /// every local APIC and the scheduler's turn come back.
  func testSMPRoundTripIsIdentical() throws {
    try checkIdentity("smp.elf", cpus: 4, at: 3_000_000, from: .interpreter, to: .interpreter)
    try checkIdentity("smp.elf", cpus: 2, at: 1_234_567, from: .translator, to: .interpreter)
  }

  /// A CPUID policy both the interpreter and KVM provide, so a guest can move between them.
  static func sharedPolicy() -> CPUIDPolicy {
    CPUIDPolicy.default.masked(
      to: EngineFeatures.implemented(by: .interpreter).intersection(
        EngineFeatures.implemented(by: .kvm)))
  }

  static func requireKVM() throws {
    let host = KVMHost.probe()
    guard host.isUsable else {
      throw XCTSkip("KVM snapshot tests need /dev/kvm: \(host.openError ?? "unusable")")
    }
  }

  /// Interpreter → KVM: stopped at an exact instruction in software, finished in hardware
  /// virtualization (KVM-PVM here), with the same result.
  func testInterpreterToKVM() throws {
    try Self.requireKVM()
    let cmdline = "bench_loop.elf div=20000"
    var c = try Self.config("bench_loop.elf", cmdline: cmdline, engine: .interpreter)
    c.cpuid = Self.sharedPolicy()
    let c1 = ConsoleOutput(capturing: ())
    let whole = Self.run(try Machine(config: c, console: c1), c1)
    XCTAssertTrue(c1.capturedText.contains("bench loop: result="), c1.capturedText)

    let c2 = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: c2)
    m.stopAtInstruction = whole.instructions / 2
    XCTAssertEqual(m.run(), .instructionStop(whole.instructions / 2))
    let path = dir.appendingPathComponent("to-kvm.snap").path
    try m.saveSnapshot(to: path)
    let c3 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, engine: .kvm, timeout: 120, console: c3)
    XCTAssertEqual(r.cpu.engineName, "kvm")
    let start = Date()
    let rest = Self.run(r, c3)
    print("interpreter -> kvm: rest of the guest in \(Date().timeIntervalSince(start)) s on KVM")
    XCTAssertEqual(rest.outcome, whole.outcome)
    XCTAssertEqual(c2.capturedText + c3.capturedText, c1.capturedText)
  }

  /// KVM → interpreter: paused while running on KVM (no exact instruction there),
  /// saved on the vCPU thread, finished by the interpreter with the same result.
  func testKVMToInterpreter() throws {
    try Self.requireKVM()
    // About 4 s on KVM-PVM here (it emulates much of the guest), so the pause lands early.
    let cmdline = "bench_loop.elf div=2000"
    var c = try Self.config("bench_loop.elf", cmdline: cmdline, engine: .kvm)
    c.cpuid = Self.sharedPolicy()
    let ci = try Self.config("bench_loop.elf", cmdline: cmdline, engine: .interpreter)
    let c0 = ConsoleOutput(capturing: ())
    let reference = Self.run(try Machine(config: ci, console: c0), c0)

    let c1 = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: c1)
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var outcome: MachineOutcome?
    Thread.detachNewThread {
      outcome = m.run()
      done.signal()
    }
    Thread.sleep(forTimeInterval: 0.5)
    let path = dir.appendingPathComponent("from-kvm.snap").path
    XCTAssertTrue(m.pause(), "KVM guest finished before the pause")
    let rip = try m.onVCPUThread { try m.cpu.getState().general.rip }
    try m.onVCPUThread { _ = try m.saveSnapshot(to: path) }
    m.requestStop(.userQuit)
    m.resume()
    done.wait()
    XCTAssertEqual(outcome, .userQuit)
    XCTAssertEqual(c1.capturedText, "", "the guest prints only at its end")

    let c2 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, engine: .interpreter, timeout: 120, console: c2)
    XCTAssertEqual(try r.cpu.getState().general.rip, rip)
    let rest = Self.run(r, c2)
    XCTAssertEqual(rest.outcome, reference.outcome)
    XCTAssertEqual(c2.capturedText, c0.capturedText)
    XCTAssertLessThan(rest.instructions, reference.instructions, "KVM had done part of the work")
  }

  /// virtio-blk and virtio-rng in the middle of the driver's work: queue addresses,
  /// ring indices and MSI-X come back (the disk file is the user's to keep as it was).
  func testVirtioGuestRoundTripIsIdentical() throws {
    func config(_ disk: String) throws -> MachineConfig {
      var c = try Self.config("virtio.elf", engine: .interpreter)
      c.virtio = try VirtioConfig(disks: ["\(disk),id=guest-test"], console: nil, entropy: true)
      return c
    }
    let d1 = dir.appendingPathComponent("whole.img").path
    let d2 = dir.appendingPathComponent("split.img").path
    for d in [d1, d2] { FileManager.default.createFile(atPath: d, contents: Data(count: 1 << 20)) }
    let c1 = ConsoleOutput(capturing: ())
    let whole = Self.run(try Machine(config: try config(d1), console: c1), c1)
    XCTAssertTrue(c1.capturedText.contains("PASS virtio"), c1.capturedText)
    let at = whole.instructions * 2 / 3
    let path = dir.appendingPathComponent("virtio.snap").path
    let c2 = ConsoleOutput(capturing: ())
    do {
      // Its own scope: the disk's lock goes with the machine.
      let m = try Machine(config: try config(d2), console: c2)
      m.stopAtInstruction = at
      XCTAssertEqual(m.run(), .instructionStop(at))
      try m.saveSnapshot(to: path)
    }
    let c3 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, timeout: 120, console: c3)
    let rest = Self.run(r, c3)
    XCTAssertEqual(rest.outcome, whole.outcome)
    XCTAssertEqual(c2.capturedText + c3.capturedText, c1.capturedText)
    XCTAssertEqual(rest.instructions, whole.instructions)
  }

  /// Nested and shadow tables are rebuilt after a restore, not saved.
  func testNestedAndShadowModesRebuildTheirTables() throws {
    for mode in [MMUMode.nested, .shadow] {
      try checkIdentity("paging.elf", mmu: mode, at: 25_000, from: .interpreter, to: .interpreter)
      try checkIdentity(
        "exceptions.elf", mmu: mode, at: 40_000, from: .interpreter, to: .translator)
    }
  }

  func testInterpreterAndTranslatorHandOver() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .interpreter, to: .translator)
      try checkIdentity(g, cmdline: c, at: n, from: .translator, to: .interpreter)
    }
  }
}

/// Damaged snapshots are refused with one clear error, before any machine is built.
final class SnapshotFileTests: XCTestCase {
  var dir: URL!
  var good: String!
  var bytes: [UInt8]!

  override func setUpWithError() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "snapshot-file-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    good = dir.appendingPathComponent("good.snap").path
    let c = try SnapshotTests.config("syscall.elf", engine: .interpreter)
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    m.stopAtInstruction = 20_000
    XCTAssertEqual(m.run(), .instructionStop(20_000))
    try m.saveSnapshot(to: good)
    bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: dir)
  }

  func write(_ b: [UInt8], _ name: String) throws -> String {
    let p = dir.appendingPathComponent(name).path
    try Data(b).write(to: URL(fileURLWithPath: p))
    return p
  }

  /// Recomputes the trailer's checksum, so a test reaches the parsers behind it.
  static func reseal(_ b: inout [UInt8]) {
    let sum = b.withUnsafeBytes { SnapshotFormat.checksum(.init(rebasing: $0[..<(b.count - 4)])) }
    for i in 0..<4 { b[b.count - 4 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt32(i))) }
  }

  func restoreError(_ path: String) -> Error? {
    do {
      _ = try Machine(restoring: path, console: ConsoleOutput(capturing: ()))
      return nil
    } catch { return error }
  }

  func testGoodFileRestores() throws {
    XCTAssertNil(restoreError(good))
    XCTAssertEqual(bytes.prefix(8), SnapshotFormat.magic[...])
  }

  func testCorruptByteIsRefusedByTheChecksum() throws {
    for offset in [20, bytes.count / 2, bytes.count - 20] {
      var b = bytes!
      b[offset] ^= 0x40
      let e = restoreError(try write(b, "corrupt.snap"))
      guard case .corrupt(let why)? = e as? SnapshotError else {
        return XCTFail("\(String(describing: e))")
      }
      XCTAssertTrue(why.contains("checksum"), why)
    }
  }

  func testTruncatedFileIsRefused() throws {
    for n in [0, 10, 100, bytes.count / 2, bytes.count - 1] {
      let e = restoreError(try write(Array(bytes.prefix(n)), "short.snap"))
      guard let s = e as? SnapshotError else { return XCTFail("\(n): \(String(describing: e))") }
      switch s {
      case .truncated, .corrupt: break
      default: XCTFail("\(n) bytes: \(s)")
      }
    }
  }

  func testOtherFormatVersionIsRefused() throws {
    var b = bytes!
    b[8] = 99
    let e = restoreError(try write(b, "v99.snap"))
    XCTAssertEqual(
      e as? SnapshotError, .versionMismatch(found: 99, expected: SnapshotFormat.version))
    XCTAssertEqual(
      "\(e!)", "snapshot format version 99 is not supported (this SwiftVMM reads version 1)")
  }

  func testOtherFileIsNotASnapshot() throws {
    let e = restoreError(try write(Array(repeating: 0x7F, count: 4096), "junk.snap"))
    XCTAssertEqual(e as? SnapshotError, .notASnapshot(dir.appendingPathComponent("junk.snap").path))
    XCTAssertNotNil(restoreError(dir.appendingPathComponent("missing.snap").path) as? SnapshotError)
  }

  func testPartVersionMismatchIsRefused() throws {
    // A part record from another SwiftVMM: same container, the UART's state version changed.
    var b = bytes!
    let needle = Array(#""version":1"#.utf8)
    let uart = Array("part.uart16550".utf8)
    guard let at = find(uart, in: b), let v = find(needle, in: b, from: at) else {
      return XCTFail("no UART record")
    }
    b[v + needle.count - 1] = UInt8(ascii: "7")
    Self.reseal(&b)
    let e = restoreError(try write(b, "part.snap"))
    XCTAssertEqual(
      e as? SnapshotStateError, .versionMismatch(part: "uart16550", found: 7, expected: 1))
  }

  /// NeverTrap: random damage behind a valid checksum reaches every parser; each
  /// must refuse or restore, never crash.
  func testRandomDamageNeverTraps() throws {
    var rng = SeededRandom(seed: 0x5A4E)
    var refused = 0
    for i in 0..<60 {
      var b = bytes!
      for _ in 0..<(1 + Int(rng.next() % 8)) {
        // Mostly the small sections before guest memory (meta, vCPU, parts).
        let limit = i % 3 == 0 ? b.count - 16 : min(b.count - 16, 16_384)
        let o = 16 + Int(rng.next() % UInt64(limit - 16))
        b[o] = UInt8(truncatingIfNeeded: rng.next())
      }
      Self.reseal(&b)
      if restoreError(try write(b, "fuzz.snap")) != nil { refused += 1 }
    }
    print("snapshot fuzz: \(refused) of 60 damaged files refused")
  }

  func find(_ needle: [UInt8], in hay: [UInt8], from: Int = 0) -> Int? {
    guard hay.count >= needle.count else { return nil }
    var i = from
    while i <= hay.count - needle.count {
      if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
      i += 1
    }
    return nil
  }
}

/// The command line: `run --snapshot-at`, then `restore`, in separate processes.
final class SnapshotCLITests: XCTestCase {
  func testRunSnapshotAtThenRestoreInANewProcess() throws {
    guard FileManager.default.isExecutableFile(atPath: CLITests.binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(CLITests.binary)")
    }
    let kernel = try GuestImages.path("syscall.elf")
    let snap = FileManager.default.temporaryDirectory
      .appendingPathComponent("cli-\(getpid()).snap").path
    defer { try? FileManager.default.removeItem(atPath: snap) }
    let base = ["run", "--kernel", kernel, "--deterministic", "--escape-key", "none"]
    let whole = try GuestImages.run(CLITests.binary, base)
    let first = try GuestImages.run(
      CLITests.binary, base + ["--snapshot-at", "30000", "--snapshot-file", snap])
    XCTAssertEqual(first.status, 6, first.output)
    XCTAssertTrue(first.output.contains("stopped after 30000 instructions"), first.output)
    XCTAssertTrue(first.output.contains("saved snapshot \(snap)"), first.output)
    let rest = try GuestImages.run(CLITests.binary, ["restore", snap, "--escape-key", "none"])
    XCTAssertEqual(rest.status, whole.status, rest.output)
    func guestLines(_ s: String) -> [Substring] {
      s.split(separator: "\n").filter { !$0.hasPrefix("swiftvmm:") && !$0.contains(" info ") }
    }
    XCTAssertEqual(guestLines(first.output) + guestLines(rest.output), guestLines(whole.output))
    XCTAssertTrue(whole.output.contains("PASS syscall"), whole.output)

    let usage = try GuestImages.run(
      CLITests.binary, ["run", "--kernel", kernel, "--snapshot-at", "5"])
    XCTAssertEqual(usage.status, 64, usage.output)
    let missing = try GuestImages.run(CLITests.binary, ["restore", snap + ".missing"])
    XCTAssertEqual(missing.status, 66, missing.output)
    XCTAssertTrue(missing.output.contains("cannot open"), missing.output)
  }
}

/// The engine-neutral vCPU record carries x87/SSE, MSRs and event state intact.
final class VCPUSnapshotTests: XCTestCase {
  func testInterpreterStateSurvivesSaveAndRestore() throws {
    let c = try SnapshotTests.config("hello.elf", engine: .interpreter)
    let a = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    let b = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    var s = try a.cpu.saveVCPU()
    var rng = SeededRandom(seed: 7)
    // x87 registers, XMM0-15 and the control words: arbitrary bytes.
    for i in 32..<416 { s.fxsave[i] = UInt8(truncatingIfNeeded: rng.next()) }
    s.fxsave[0] = 0x7F
    s.fxsave[1] = 0x03
    s.fxsave[24] = 0x80
    s.fxsave[25] = 0x3F  // MXCSR 0x3F80
    s.msrs[MSR.lstar] = 0xFFFF_FFFF_8100_0000
    s.msrs[MSR.star] = 0x0023_0010_0000_0000
    s.msrs[MSR.kernelGSBase] = 0xFFFF_8880_0000_1000
    s.msrs[MSR.pat] = 0x0007_0106_0007_0106
    s.msrs[MSR.sysenterEIP] = 0x1234
    s.debugRegisters = [1, 2, 3, 4, 0xFFFF_0FF0, 0x401]
    s.interruptShadow = true
    s.nmiBlocked = true
    s.instructionsRetired = 123_456
    s.pendingRead = .init(mmio: false, key: 0x3FD | 1 << 16, value: 0x60)
    try b.cpu.restoreVCPU(s)
    let back = try b.cpu.saveVCPU()
    XCTAssertEqual(Array(back.fxsave[0..<4]), Array(s.fxsave[0..<4]))
    XCTAssertEqual(Array(back.fxsave[24..<28]), Array(s.fxsave[24..<28]))
    for i in 0..<8 {  // 80-bit x87 registers (the rest of each 16-byte slot is padding)
      XCTAssertEqual(
        Array(back.fxsave[(32 + 16 * i)..<(42 + 16 * i)]),
        Array(s.fxsave[(32 + 16 * i)..<(42 + 16 * i)]))
    }
    XCTAssertEqual(Array(back.fxsave[160..<416]), Array(s.fxsave[160..<416]), "XMM0-15")
    for i in [MSR.lstar, MSR.star, MSR.kernelGSBase, MSR.pat, MSR.sysenterEIP] {
      XCTAssertEqual(back.msrs[i], s.msrs[i], "MSR \(String(i, radix: 16))")
    }
    XCTAssertEqual(back.debugRegisters, s.debugRegisters)
    XCTAssertEqual(back.registers, s.registers)
    XCTAssertTrue(back.interruptShadow && back.nmiBlocked)
    XCTAssertEqual(back.instructionsRetired, 123_456)
    XCTAssertEqual(back.pendingRead, s.pendingRead)
  }
}
