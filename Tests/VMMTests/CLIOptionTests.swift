import Foundation
import TestSupport
import VMM
import XCTest

/// The shared machine options of `run`, `linux` and `mmu-compare`: every value is
/// checked before a guest starts, with the subcommand's usage and a documented status.
final class CLIOptionTests: XCTestCase {
  func temp(_ suffix: String = "") -> String {
    let p = NSTemporaryDirectory() + "swiftvmm-cliopt-\(UUID().uuidString)\(suffix)"
    addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
    return p
  }

  /// Each numeric option, in each subcommand that has it, fed negative, zero, huge
  /// and non-numeric values: all are usage errors (64) naming the subcommand.
  func testEveryNumericOptionRejectsBadValues() throws {
    let hello = try GuestImages.path("hello.elf")
    let commands: [(String, [String])] = [
      ("run", ["run", "--kernel", hello, "--engine", "interpreter"]),
      ("linux", ["linux", "--cache", "/nonexistent-swiftvmm-cache"]),
      ("mmu-compare", ["mmu-compare", "--kernel", hello]),
    ]
    let options: [(String, [String], huge: String)] = [
      ("--memory", [], "99999T"),
      ("--cpus", [], "100000"),
      ("--max-instructions", [], "18446744073709551615"),
      ("--timeout", [], "1e300"),
      ("--shadow-cap", ["--mmu", "shadow"], "1000000000"),
      ("--translate-at", ["--translate", "0x1000"], "18446744073709551615"),
    ]
    var cases: [(what: String, args: [String], command: String)] = []
    for (name, base) in commands {
      for (opt, extra, huge) in options {
        if name == "mmu-compare" && !extra.isEmpty && opt != "--shadow-cap" { continue }
        let more = name == "mmu-compare" ? [] : extra
        // Negative, zero, huge, non-numeric; "nan" parses as a Double, so --timeout gets it too.
        for value in ["-1", "0", huge, "abc"] + (opt == "--timeout" ? ["nan"] : []) {
          cases.append(("\(name) \(opt)=\(value)", base + more + ["\(opt)=\(value)"], name))
        }
      }
    }
    XCTAssertEqual(cases.count, 3 * 6 * 4 - 4 + 3)
    // Each case is a process start; run them a few at a time.
    try requireSwiftVMMBinary()
    let results = ResultBox(count: cases.count)
    DispatchQueue.concurrentPerform(iterations: cases.count) { i in
      results.set(i, try? GuestImages.run(CLITests.binary, cases[i].args, timeout: 120))
    }
    for (i, c) in cases.enumerated() {
      guard let r = results.get(i) else {
        XCTFail("\(c.what): could not run")
        continue
      }
      XCTAssertEqual(r.status, 64, "\(c.what): \(r.output)")
      XCTAssertTrue(r.output.contains("Error:"), "\(c.what): \(r.output)")
      XCTAssertTrue(r.output.contains("Usage: swiftvmm \(c.command)"), "\(c.what): \(r.output)")
      XCTAssertFalse(r.output.contains("Fatal error"), "\(c.what): \(r.output)")
    }
  }

  final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(status: Int32, output: String)?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: (status: Int32, output: String)?) {
      lock.lock()
      items[i] = r
      lock.unlock()
    }
    func get(_ i: Int) -> (status: Int32, output: String)? {
      lock.lock()
      defer { lock.unlock() }
      return items[i]
    }
  }

  func testContradictoryFlagsAreUsageErrors() throws {
    let hello = try GuestImages.path("hello.elf")
    for (args, words) in [
      (["--engine", "kvm", "--mmu", "shadow"], "--mmu shadow needs the interpreter"),
      (["--engine", "kvm", "--deterministic"], "--deterministic needs a software engine"),
      (
        ["--engine", "kvm", "--max-instructions", "1000"],
        "--max-instructions needs a software engine"
      ),
      (
        ["--engine", "interpreter", "--shadow-cap", "64"],
        "--shadow-cap applies only to --mmu shadow"
      ),
      (
        ["--engine", "interpreter", "--mmu", "shadow", "--nested-walk-cache"],
        "--nested-walk-cache applies only"
      ),
      (
        ["--engine", "interpreter", "--mmu", "nested", "--shadow-cap", "64"],
        "--shadow-cap applies only"
      ),
    ] {
      let r = try runSwiftVMM(["run", "--kernel", hello] + args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.output)")
      XCTAssertTrue(r.output.contains(words), "\(args): \(r.output)")
      XCTAssertTrue(r.output.contains("Usage: swiftvmm run"), "\(args): \(r.output)")
    }
  }

  func testShadowCapCountsAgainstHostMemory() throws {
    // 1 Mi shadow pages is 4 GiB: within the cap's range, but only on a host with room.
    let hello = try GuestImages.path("hello.elf")
    let host = UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    let guestMiB = host >> 20 - 1024
    let r = try runSwiftVMM([
      "run", "--kernel", hello, "--engine", "interpreter", "--mmu", "shadow",
      "--memory", "\(guestMiB)", "--shadow-cap", "\(1 << 20)",
    ])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("of shadow tables is larger than this host"), r.output)
  }

  func testMemoryIsMiBByDefaultAndTakesSuffixes() throws {
    let hello = try GuestImages.path("hello.elf")
    // mem_upper: KiB from 1 MiB to the top of RAM, less the 128 KiB kept at the top.
    for (size, mib) in [
      ("256", 256), ("256M", 256), ("256MiB", 256), ("1GiB", 1024), ("131072K", 128),
      ("131072KiB", 128),
    ] {
      let r = try runSwiftVMM([
        "run", "--kernel", hello, "--engine", "interpreter", "--memory", size,
      ])
      XCTAssertEqual(r.status, 1, "\(size): \(r.output)")
      XCTAssertTrue(
        r.output.contains("mem_upper=\(mib * 1024 - 1024 - 128)K"), "\(size): \(r.output)")
    }
    let r = try runSwiftVMM(["run", "--help"])
    XCTAssertTrue(r.output.contains("a bare number is MiB"), r.output)
  }

  func testStatsPathIsCheckedBeforeTheRun() throws {
    let hello = try GuestImages.path("hello.elf")
    for path in ["/nonexistent-dir/stats.json", NSTemporaryDirectory()] {
      let r = try runSwiftVMM([
        "run", "--kernel", hello, "--engine", "interpreter", "--stats", path,
      ])
      XCTAssertEqual(r.status, 73, r.output)
      XCTAssertFalse(
        r.output.contains("Hello from SwiftVMM"), "refused before the guest ran: \(r.output)")
      XCTAssertTrue(r.output.contains("cannot write \(path): "), r.output)
      XCTAssertEqual(r.output.split(separator: "\n").count, 1, r.output)
    }
  }

  /// A stats file that passes the early check but cannot be written after the run
  /// (a full disk) still fails the run: status 73, not the guest's status.
  func testStatsWriteFailureAfterTheRunChangesTheStatus() throws {
    guard FileManager.default.isWritableFile(atPath: "/dev/full") else {
      throw XCTSkip("/dev/full is not available here")
    }
    let hello = try GuestImages.path("hello.elf")
    let r = try runSwiftVMM([
      "run", "--kernel", hello, "--engine", "interpreter", "--stats", "/dev/full",
    ])
    XCTAssertEqual(r.status, 73, r.output)
    XCTAssertTrue(r.output.contains("Hello from SwiftVMM guest!"), r.output)
    XCTAssertTrue(
      r.output.contains("--stats: cannot write /dev/full: No space left on device"), r.output)
  }

  func testStatsReportSchema() throws {
    let out = temp(".json")
    let r = try runSwiftVMM([
      "run", "--kernel", try GuestImages.path("hello.elf"), "--engine", "interpreter",
      "--memory", "64", "--stats", out,
    ])
    XCTAssertEqual(r.status, 1, r.output)
    let json =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))
      as? [String: Any]
    XCTAssertEqual(json?["schema_version"] as? Int, 1)
    XCTAssertEqual(json?["exit_status"] as? Int, 1)
    XCTAssertNotNil(json?["wall_seconds"] as? Double)
    XCTAssertEqual((json?["units"] as? [String: String])?["wall_seconds"], "seconds")
    let machine = json?["machine"] as? [String: Any]
    XCTAssertEqual(machine?["engine"] as? String, "interpreter")
    XCTAssertEqual(machine?["memory_bytes"] as? Int, 64 << 20)
    XCTAssertEqual(machine?["mmu"] as? String, "direct")
    let counters = json?["counters"] as? [String: Any] ?? [:]
    XCTAssertNotNil(counters["exits.io"], "\(counters.keys.sorted())")
    XCTAssertNil(counters["exits.portio"])
    for k in counters.keys {
      XCTAssertTrue(
        k.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" || $0 == "." },
        "not snake_case: \(k)")
      XCTAssertFalse(k.contains("interrupted"), "internal kicks are host_kicks: \(k)")
    }
  }

  func testOtherUsageErrorsNameTheirSubcommand() throws {
    var cases = [
      (["linux", "--log-level", "loud"], "unknown log level 'loud'", "linux"),
      (["linux", "--cmdline", "a", "--append", "b"], "not both", "linux"),
      (["bench", "boot", "--memory=-1"], "--memory: cannot parse", "bench boot"),
      (["bench", "boot", "--memory", "4096K", "--repeats", "0"], "--repeats 0", "bench boot"),
      (["cpuid", "--engine", "vmware"], "unknown engine 'vmware'", "cpuid"),
      (
        ["initramfs", "--output", "/tmp/x"], "exactly one of --from DIR and --standard", "initramfs"
      ),
    ]
    // Linux on KVM is refused only where the KVM engine cannot run it (KVM-PVM).
    if KVMPlatformLimits.linuxRefusal(engine: .kvm) != nil {
      cases.append((["linux", "--engine", "kvm"], "cannot boot Linux on KVM-PVM", "linux"))
    }
    for (args, words, command) in cases {
      let r = try runSwiftVMM(args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.output)")
      XCTAssertTrue(r.output.contains(words), "\(args): \(r.output)")
      XCTAssertTrue(r.output.contains("Usage: swiftvmm \(command)"), "\(args): \(r.output)")
      XCTAssertTrue(r.output.contains("See 'swiftvmm \(command) --help'"), "\(args): \(r.output)")
    }
  }

  func testMistypedSubcommandAndVersion() throws {
    var r = try runSwiftVMM(["rn", "--kernel", "x"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("unknown subcommand 'rn'; did you mean 'run'?"), r.output)
    r = try runSwiftVMM(["frobnicate"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("unknown subcommand 'frobnicate'"), r.output)
    XCTAssertFalse(r.output.contains("did you mean"), r.output)
    r = try runSwiftVMM(["--version"])
    XCTAssertEqual(r.status, 0, r.output)
    XCTAssertTrue(r.output.hasPrefix("swiftvmm "), r.output)
  }

  func testOutputFilesFailWithPathAndReason() throws {
    let dir = temp()
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
    try "x".write(toFile: dir + "/f", atomically: false, encoding: .utf8)
    let r = try runSwiftVMM([
      "initramfs", "--from", dir, "--output", "/nonexistent-dir/initrd.cpio",
    ])
    XCTAssertEqual(r.status, 73, r.output)
    XCTAssertEqual(
      r.output,
      "swiftvmm: initramfs --output: cannot write /nonexistent-dir/initrd.cpio: No such file or directory\n"
    )
    let hello = try GuestImages.path("hello.elf")
    for opt in ["--json", "--svg"] {
      let m = try runSwiftVMM(["mmu-compare", "--kernel", hello, opt, "/proc/swiftvmm-no"])
      XCTAssertEqual(m.status, 73, m.output)
      XCTAssertTrue(m.output.contains("\(opt): cannot write /proc/swiftvmm-no: "), m.output)
      XCTAssertFalse(m.output.contains("running"), "checked before any run: \(m.output)")
    }
  }

  func testMMUCompareJSONSharesTheSchema() throws {
    let out = temp(".json")
    let r = try runSwiftVMM([
      "mmu-compare", "--kernel", try GuestImages.path("hello.elf"), "--modes", "direct,shadow",
      "--shadow-cap", "64", "--memory", "64", "--json", out,
    ])
    XCTAssertEqual(r.status, 0, r.output)
    let json =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))
      as? [String: Any]
    XCTAssertEqual(json?["schema_version"] as? Int, 1)
    let runs = json?["runs"] as? [[String: Any]] ?? []
    XCTAssertEqual(runs.map { $0["label"] as? String }, ["direct", "shadow"])
    let shadow = runs.last?["machine"] as? [String: Any]
    XCTAssertEqual(shadow?["shadow_page_cap"] as? Int, 64)
    XCTAssertNotNil((runs.first?["counters"] as? [String: Any])?["instructions"])
  }
}
