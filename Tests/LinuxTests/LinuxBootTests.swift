import Boot
import Engine
import Foundation
import TestSupport
import X86
import XCTest

@testable import VMM

/// Boots the Debian kernel with a busybox initramfs on the interpreter.
/// `.ci/run` fetches the guest (`swiftvmm guest fetch-linux`); run it in a
/// release build (`scripts/test`): a debug interpreter is far too slow.
final class LinuxBootTests: XCTestCase {
  static let marker = "SWIFTVMM-LINUX-MARKER"

  func guest() throws -> LinuxGuestImages {
    guard let g = LinuxGuestImages.locate() else {
      let missing = LinuxGuestImages.missingPieces(in: LinuxGuestImages.defaultCacheDirectory)
      throw XCTSkip(
        "Debian guest not fetched (\(missing.joined(separator: ", "))); run `swiftvmm guest fetch-linux`"
      )
    }
    #if DEBUG
      throw XCTSkip(
        "Linux boot tests need a release build (scripts/test); the debug interpreter is too slow")
    #else
      return g
    #endif
  }

  func boot(
    _ g: LinuxGuestImages, commands: String, cpuid: CPUIDPolicy,
    proto: LinuxBootProtocol = .bzImage,
    deterministic: Bool = false, cpus: Int = 1, kernel: [UInt8]? = nil
  ) throws -> (MachineOutcome, String, Machine) {
    let initrd = try StandardInitramfs.build(
      guest: g, initScript: StandardInitramfs.initScript(commands: commands), gzip: false)
    var c = MachineConfig(
      kernel: try kernel ?? [UInt8](Data(contentsOf: URL(fileURLWithPath: g.bzImage))),
      kernelName: "vmlinuz",
      engine: .interpreter)
    c.initrd = initrd
    c.commandLine = "console=ttyS0 panic=-1"
    c.memorySize = 256 << 20
    c.cpuid = cpuid
    c.linuxProtocol = proto
    c.timeout = 900
    c.deterministic = deterministic
    c.cpus = cpus
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return (o, console.capturedText, m)
  }

  func testBootsToBusyboxAndPowersOff() throws {
    let g = try guest()
    let policy = try CPUIDPolicy.named("kvm")
    let commands = """
      echo \(Self.marker)
      echo clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
      grep -m1 'model name' /proc/cpuinfo
      grep -m1 '^flags' /proc/cpuinfo
      grep -m1 'cache size' /proc/cpuinfo
      echo sum=$(echo $((6 * 7)))
      ls / | wc -l
      """
    let (o, out, _) = try boot(g, commands: commands, cpuid: policy)
    XCTAssertEqual(o, .powerOff, "last lines:\n\(out.suffix(3000))")
    XCTAssertTrue(out.contains(Self.marker), out.suffix(3000).description)
    XCTAssertTrue(out.contains("clocksource=kvm-clock"), "kvm-clock not selected")
    XCTAssertTrue(
      out.contains("model name\t: \(policy.brand)"), "model name differs from the policy")
    XCTAssertTrue(out.contains("sum=42"))
    // The policy's cache leaves (AMD: the L2 of 0x80000006).
    XCTAssertTrue(out.contains("cache size\t: 1024 KB"), "no cache size in /proc/cpuinfo")
    // Flags the policy sets are present, flags it leaves out are absent.
    let flagsLine = out.split(whereSeparator: \.isNewline).first { $0.hasPrefix("flags") } ?? ""
    let flags = Set(
      flagsLine.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
    // The default policy's x86-64-v2 set (Linux names SSE3 "pni").
    for f in [
      "fpu", "sse2", "hypervisor", "lm", "nx", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16",
      "lahf_lm",
    ] {
      XCTAssertTrue(flags.contains(f), "flag \(f) missing: \(flagsLine)")
    }
    for f in ["avx", "avx2", "vmx", "svm"] {
      XCTAssertFalse(flags.contains(f), "flag \(f) present: \(flagsLine)")
    }
  }

  func testPVHEntryBoots() throws {
    let g = try guest()
    let (o, out, _) = try boot(
      g, commands: "echo \(Self.marker)", cpuid: try CPUIDPolicy.named("kvm"), proto: .pvh)
    XCTAssertEqual(o, .powerOff, "last lines:\n\(out.suffix(3000))")
    XCTAssertTrue(out.contains(Self.marker))
  }

  /// The 32-bit entry that kernels older than protocol 2.12 get: Debian's kernel with
  /// XLF_KERNEL_64 cleared starts at startup_32 in protected mode, paging off.
  func testThirtyTwoBitEntryBoots() throws {
    let g = try guest()
    var k = [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage)))
    k[BzImageLoader.Offset.xloadflags] &= ~UInt8(BzImageLoader.SetupHeader.xlfKernel64)
    XCTAssertFalse(try BzImageLoader.parseHeader(k).has64BitEntry)
    let (o, out, _) = try boot(
      g, commands: "echo \(Self.marker)", cpuid: try CPUIDPolicy.named("kvm"), kernel: k)
    XCTAssertEqual(o, .powerOff, "last lines:\n\(out.suffix(3000))")
    XCTAssertTrue(out.contains(Self.marker))
  }

  func testDeterministicBootsRetireTheSameInstructions() throws {
    let g = try guest()
    var counts: [UInt64] = []
    for _ in 0..<2 {
      let (o, out, m) = try boot(
        g, commands: "echo \(Self.marker); date", cpuid: try CPUIDPolicy.named("kvm"),
        deterministic: true)
      XCTAssertEqual(o, .powerOff, "last lines:\n\(out.suffix(2000))")
      XCTAssertTrue(out.contains("2026"), "RTC starts at the fixed deterministic date")
      counts.append(m.statistics()["instructions"] ?? 0)
    }
    print("deterministic boots retired \(counts[0]) and \(counts[1]) instructions")
    XCTAssertGreaterThan(counts[0], 100_000_000)
    XCTAssertEqual(
      counts[0], counts[1], "two deterministic boots retired different instruction counts")
  }
}
