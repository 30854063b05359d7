import Engine
import X86
import XCTest

/// The cache hierarchy every policy reports (32K L1d/L1i, 1M L2, 16M L3, 64-byte lines),
/// decoded the way a guest decodes it, in each vendor's format.
final class CPUIDCacheLeavesTests: XCTestCase {
  func testAMDPolicyReportsCachesAndTLBsInLeaves80000005And6() {
    let p = CPUIDPolicy.default
    XCTAssertFalse(p.isIntel)
    let l1 = p.lookup(leaf: 0x8000_0005, subleaf: 0)
    XCTAssertEqual(l1.ecx >> 24, 32, "L1d KiB")
    XCTAssertEqual((l1.ecx >> 16) & 0xFF, 8, "L1d ways")
    XCTAssertEqual(l1.ecx & 0xFF, 64, "L1d line")
    XCTAssertEqual(l1.edx >> 24, 32, "L1i KiB")
    XCTAssertEqual(l1.ebx & 0xFF, 64, "L1 iTLB entries, 4K pages")
    let l2 = p.lookup(leaf: 0x8000_0006, subleaf: 0)
    XCTAssertEqual(l2.ecx >> 16, 1024, "L2 KiB")
    XCTAssertEqual((l2.ecx >> 12) & 0xF, 8, "L2 16-way (APM code 8)")
    XCTAssertEqual(l2.ecx & 0xFF, 64)
    XCTAssertEqual((l2.edx >> 18) * 512, 16 * 1024, "L3 KiB")
    XCTAssertEqual(l2.edx & 0xFF, 64)
    XCTAssertEqual(l2.ebx & 0xFFF, 2048, "L2 iTLB entries, 4K pages")
    // No Intel leaves on AMD.
    XCTAssertEqual(p.lookup(leaf: 4, subleaf: 0), CPUIDResult())
  }

  func testIntelPolicyReportsDeterministicCacheLeaf4() throws {
    var s = CPUIDPolicySpec()
    s.vendor = "GenuineIntel"
    let p = try s.build()
    XCTAssertTrue(p.isIntel)
    var sizes: [String] = []
    for i in UInt32(0)..<8 {
      let r = p.lookup(leaf: 4, subleaf: i)
      let type = r.eax & 0x1F
      if type == 0 { break }
      let size =
        ((r.ebx >> 22) + 1) * (((r.ebx >> 12) & 0x3FF) + 1) * ((r.ebx & 0xFFF) + 1) * (r.ecx + 1)
      sizes.append("L\((r.eax >> 5) & 7)\(["", "d", "i", ""][Int(type)]) \(size >> 10)K")
    }
    XCTAssertEqual(sizes, ["L1d 32K", "L1i 32K", "L2 1024K", "L3 16384K"])
    let l2 = p.lookup(leaf: 2, subleaf: 0)
    XCTAssertEqual(l2.eax & 0xFF, 1)
    XCTAssertEqual((l2.eax >> 8) & 0xFF, 0xFF, "descriptor 0xFF: see leaf 4")
    XCTAssertEqual(p.lookup(leaf: 0x8000_0006, subleaf: 0).ecx >> 16, 1024)
    XCTAssertEqual(p.lookup(leaf: 0x8000_0005, subleaf: 0), CPUIDResult())
    // Back to AMD: the Intel leaves go.
    var back = CPUIDPolicySpec()
    back.vendor = "AuthenticAMD"
    XCTAssertEqual(try back.build().lookup(leaf: 4, subleaf: 0), CPUIDResult())
    XCTAssertEqual(try back.build(), CPUIDPolicy.default)
  }

  /// topoext (off by default, as on QEMU's TCG) adds AMD's 0x8000001D cache leaf, in
  /// leaf 4's layout with the same hierarchy, and 0x8000001E with each CPU's APIC ID.
  func testTopoextAddsAMDCacheLeaf8000001D() throws {
    XCTAssertFalse(CPUIDPolicy.default.has(CPUFeature.named("topoext")!))
    XCTAssertEqual(CPUIDPolicy.default.lookup(leaf: 0x8000_001D, subleaf: 0), CPUIDResult())
    var s = CPUIDPolicySpec()
    s.enable = ["topoext"]
    let p = try s.build()
    XCTAssertEqual(p.lookup(leaf: 0x8000_0000, subleaf: 0).eax, 0x8000_001E)
    XCTAssertNotEqual(p.lookup(leaf: 0x8000_0001, subleaf: 0).ecx & (1 << 22), 0)
    var sizes: [String] = []
    for i in UInt32(0)..<8 {
      let r = p.lookup(leaf: 0x8000_001D, subleaf: i)
      let type = r.eax & 0x1F
      if type == 0 { break }
      let size =
        ((r.ebx >> 22) + 1) * (((r.ebx >> 12) & 0x3FF) + 1) * ((r.ebx & 0xFFF) + 1) * (r.ecx + 1)
      sizes.append("L\((r.eax >> 5) & 7)\(["", "d", "i", ""][Int(type)]) \(size >> 10)K")
    }
    XCTAssertEqual(sizes, ["L1d 32K", "L1i 32K", "L2 1024K", "L3 16384K"])
    let e = p.lookup(leaf: 0x8000_001E, subleaf: 0).forCPU(leaf: 0x8000_001E, apicID: 3)
    XCTAssertEqual(e.eax, 3, "extended APIC ID")
    XCTAssertEqual(e.ebx & 0xFF, 3, "core ID")
    s.vendor = "GenuineIntel"
    let intel = try s.build()
    XCTAssertEqual(intel.lookup(leaf: 0x8000_0001, subleaf: 0).ecx & (1 << 22), 0, "AMD only")
    XCTAssertLessThan(intel.lookup(leaf: 0x8000_0000, subleaf: 0).eax, 0x8000_001D)
  }
}
