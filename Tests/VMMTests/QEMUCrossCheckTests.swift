import Foundation
import KVM
import TestSupport
import XCTest

/// The same guest image must print the same text under SwiftVMM as under QEMU,
/// which is the oracle for expected guest behaviour.
final class QEMUCrossCheckTests: XCTestCase {
  nonisolated(unsafe) static var qemuCache: [String: (Int32, String)] = [:]
  static let lock = NSLock()

  /// The guest's own output under QEMU. SeaBIOS prints to the same serial port
  /// first, so this keeps what follows the guest's first line.
  static func qemuOutput(
    _ kernel: String, firstLine: String, cmdline: String, cpus: Int = 1
  ) throws -> (Int32, String) {
    guard let qemu = GuestImages.qemu else {
      throw XCTSkip("qemu-system-x86_64 is not installed (.ci/run installs it)")
    }
    let key = kernel + "|" + cmdline + "|\(cpus)"
    lock.lock()
    defer { lock.unlock() }
    if let c = qemuCache[key] { return c }
    // One TCG thread: with a thread per vCPU on a loaded 2-core host, the smp guest's
    // ticket lock (holders preempted) once took QEMU past the 60 s limit.
    var args = [
      "-accel", "tcg,thread=single", "-m", "128", "-display", "none", "-serial", "stdio", "-no-reboot",
      "-kernel", kernel, "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
    ]
    if !cmdline.isEmpty { args += ["-append", cmdline] }
    if cpus > 1 { args += ["-smp", "\(cpus)"] }
    let r = try GuestImages.run(qemu, args, timeout: 60)
    var out = ""
    if let range = r.output.range(of: firstLine) { out = String(r.output[range.lowerBound...]) }
    qemuCache[key] = (r.status, out)
    return (r.status, out)
  }

  /// Figures that legitimately differ between VMMs (TSC cycle counts) are masked.
  static func normalize(_ s: String) -> String {
    s.replacingOccurrences(
      of: #"\d+ tsc/roundtrip"#, with: "N tsc/roundtrip", options: .regularExpression)
  }

  func check(_ guest: String, firstLine: String, engine: String, cmdline: String = "") throws {
    let kernel = try GuestImages.path(guest)
    if engine == "kvm" {
      let host = KVMHost.probe()
      guard host.isUsable else { throw XCTSkip("needs /dev/kvm: \(host.openError ?? "")") }
    }
    let (qs, qemu) = try Self.qemuOutput(kernel, firstLine: firstLine, cmdline: cmdline)
    var args = [
      "run", "--engine", engine, "--kernel", kernel, "--memory", "128M", "--timeout", "120",
    ]
    if !cmdline.isEmpty { args += ["--cmdline", cmdline] }
    let ours = try GuestImages.run(CLITests.binary, args, timeout: 150)
    XCTAssertFalse(qemu.isEmpty, "QEMU printed no guest output")
    XCTAssertEqual(ours.status, qs, "exit status; our output:\n\(ours.output)")
    XCTAssertEqual(Self.normalize(ours.output), Self.normalize(qemu))
  }

  // Guests KVM-PVM can run: it emulates privileged instructions incompletely,
  // so the exception, ring-3 and paging guests run on the interpreter only here.
  func testHelloOnKVM() throws { try check("hello.elf", firstLine: "Hello from", engine: "kvm") }
  func testExitsOnKVM() throws {
    try check("exits.elf", firstLine: "pio:", engine: "kvm", cmdline: "count=200")
  }
  func testModesOnKVM() throws { try check("modes.elf", firstLine: "modes:", engine: "kvm") }
  /// Timer and UART interrupts through the VMM's platform, injected with KVM_INTERRUPT.
  func testIRQsOnKVM() throws { try check("irqs.elf", firstLine: "irqs:", engine: "kvm") }
  func testIRQsOnInterpreter() throws {
    try check("irqs.elf", firstLine: "irqs:", engine: "interpreter")
  }

  func testHelloOnInterpreter() throws {
    try check("hello.elf", firstLine: "Hello from", engine: "interpreter")
  }
  func testExitsOnInterpreter() throws {
    try check("exits.elf", firstLine: "pio:", engine: "interpreter", cmdline: "count=200")
  }
  func testModesOnInterpreter() throws {
    try check("modes.elf", firstLine: "modes:", engine: "interpreter")
  }
  func testExceptionsOnInterpreter() throws {
    try check("exceptions.elf", firstLine: "exceptions:", engine: "interpreter")
  }
  func testIDTAndISTOnInterpreter() throws {
    try check("idt_ist.elf", firstLine: "idt_ist:", engine: "interpreter")
  }
  func testPagingOnInterpreter() throws {
    try check("paging.elf", firstLine: "paging:", engine: "interpreter")
  }
  func testSyscallOnInterpreter() throws {
    try check("syscall.elf", firstLine: "syscall:", engine: "interpreter")
  }
  func testSoftIntOnInterpreter() throws {
    try check("softint.elf", firstLine: "softint:", engine: "interpreter")
  }

  /// Segment limit and type checks in 32- and 16-bit protected mode (Guests/segments).
  /// QEMU 7.2 TCG checks segment loads and far JMP targets but not data or stack
  /// limits, types, null selectors, execute-only reads, CS limits on fetch, near
  /// branches and far RET/CALL targets (a far CALL's #GP carries the selector, not 0):
  /// those cases print "sdm " lines, are skipped under QEMU (`sdm=0`, some crash it),
  /// and the guest checks them itself against the SDM's outcome. Every other line,
  /// and the exit status, must equal QEMU's.
  func checkSegments(engine: String) throws {
    let kernel = try GuestImages.path("segments.elf")
    let (qs, qemu) = try Self.qemuOutput(kernel, firstLine: "segments:", cmdline: "sdm=0")
    let ours = try GuestImages.run(
      CLITests.binary,
      ["run", "--engine", engine, "--kernel", kernel, "--memory", "128M", "--timeout", "120"],
      timeout: 150)
    let notSDM = { (out: String) in
      out.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("sdm") }
    }
    XCTAssertFalse(qemu.isEmpty, "QEMU printed no guest output")
    XCTAssertEqual(ours.status, qs, "exit status; our output:\n\(ours.output)")
    XCTAssertEqual(notSDM(ours.output), notSDM(qemu))
    XCTAssertFalse(ours.output.contains("FAIL"), ours.output)
    // Every SDM-only case ran: the header gives their number.
    let lines = ours.output.split(separator: "\n")
    let header = try XCTUnwrap(lines.first { $0.hasPrefix("segments: ") })
    let n = header.components(separatedBy: " of them checked")[0].split(separator: " ").last
    XCTAssertEqual(
      lines.filter { $0.hasPrefix("sdm ") }.count, n.flatMap { Int($0) }, String(header))
  }

  func testSegmentsOnInterpreter() throws { try checkSegments(engine: "interpreter") }
  func testSegmentsOnTranslator() throws { try checkSegments(engine: "translator") }
}
