import Engine
import Interpreter
import X86
import XCTest

@testable import VMM

/// The interpreter hands MMU events to the VMM's `SoftwareMMUHooks` inside `run()`;
/// none of them reaches the run loop as a `VMExit`.
final class SoftwareMMUHooksTests: XCTestCase {
  /// Records each event, then forwards it to the VMM's MMU (or refuses it).
  final class Recorder: SoftwareMMUHooks {
    let next: SoftwareMMUHooks
    var events: [String] = []
    var refuse: String?
    init(next: SoftwareMMUHooks) { self.next = next }
    func nestedPageFault(gpa: UInt64, write: Bool, fetch: Bool) -> String? {
      events.append("nested \(String(gpa, radix: 16)) w\(write) f\(fetch)")
      return refuse ?? next.nestedPageFault(gpa: gpa, write: write, fetch: fetch)
    }
    func shadowMiss(gva: UInt64, write: Bool, user: Bool, fetch: Bool) -> String? {
      events.append("miss \(String(gva, radix: 16)) w\(write) f\(fetch)")
      return refuse ?? next.shadowMiss(gva: gva, write: write, user: user, fetch: fetch)
    }
    func protectedWrite(gva: UInt64, gpa: UInt64, size: Int, value: UInt64) -> String? {
      events.append("wp \(String(gva, radix: 16))")
      return refuse ?? next.protectedWrite(gva: gva, gpa: gpa, size: size, value: value)
    }
    func cr3Loaded(_ cr3: UInt64) -> String? {
      events.append("cr3 \(String(cr3, radix: 16))")
      return refuse ?? next.cr3Loaded(cr3)
    }
    func invalidatedPage(_ gva: UInt64) {
      events.append("invlpg \(String(gva, radix: 16))")
      next.invalidatedPage(gva)
    }
  }

  // mov rax, [0x200000] ; invlpg [0x200000] ; mov rbx, cr3 ; mov cr3, rbx ; hlt
  static let code: [UInt8] = [
    0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00,
    0x0F, 0x01, 0x3C, 0x25, 0x00, 0x00, 0x20, 0x00,
    0x0F, 0x20, 0xDB, 0x0F, 0x22, 0xDB, 0xF4,
  ]

  func testShadowEventsGoToTheHooksAndTheRunGoesOn() throws {
    let b = try MMUModeTests.Bare(mode: .shadow, code: Self.code)
    let r = Recorder(next: b.mmu)
    b.cpu.mmuHooks = r
    XCTAssertEqual(try b.run().0, .halt)
    XCTAssertEqual(r.events.first, "miss 1000 wfalse ftrue")
    XCTAssertTrue(r.events.contains("miss 200000 wfalse ffalse"), "\(r.events)")
    XCTAssertTrue(r.events.contains("invlpg 200000"), "\(r.events)")
    XCTAssertTrue(r.events.contains("cr3 \(String(MMUModeTests.Bare.pml4, radix: 16))"))
    let s = b.cpu.statistics()
    XCTAssertEqual(s["exits.shadow_mmu"], UInt64(r.events.count))
    XCTAssertEqual(s["host_kicks"], nil, "an MMU event is no host kick")
  }

  func testNestedFaultsGoToTheHooks() throws {
    let b = try MMUModeTests.Bare(mode: .nested, code: Self.code)
    let r = Recorder(next: b.mmu)
    b.cpu.mmuHooks = r
    XCTAssertEqual(try b.run().0, .halt)
    // The first guest-table reference (the walk sets A bits: a write) has no nested mapping yet.
    let pml4 = String(MMUModeTests.Bare.pml4, radix: 16)
    XCTAssertEqual(r.events.first?.hasPrefix("nested \(pml4) "), true, "\(r.events)")
    XCTAssertFalse(r.events.contains { $0.hasPrefix("miss") || $0.hasPrefix("cr3") })
    XCTAssertEqual(b.cpu.statistics()["exits.nested_page_fault"], UInt64(r.events.count))
  }

  func testAHookMessageStopsTheVM() throws {
    let b = try MMUModeTests.Bare(mode: .shadow, code: Self.code)
    let r = Recorder(next: b.mmu)
    r.refuse = "refused by the test"
    b.cpu.mmuHooks = r
    XCTAssertEqual(try b.run().0, .shutdown(reason: "refused by the test"))
    XCTAssertEqual(r.events.count, 1)
  }

  func testAnMMUEventWithNoHooksStopsTheVM() throws {
    let b = try MMUModeTests.Bare(mode: .shadow, code: Self.code)
    b.cpu.mmuHooks = nil
    guard case .shutdown(let why)? = try b.run().0 else { return XCTFail("no shutdown") }
    XCTAssertTrue(why.contains("no VMM MMU attached"), why)
  }

  /// The VMM finds the software MMU through the protocol, for every interpreting engine.
  func testEnginesPublishTheirSoftwareMMU() throws {
    let b = try MMUModeTests.Bare(mode: .direct, code: [0xF4])
    let cpu: VirtualCPU = b.cpu
    XCTAssertTrue(cpu.softwareMMU === b.cpu)
    XCTAssertTrue(b.cpu.mmuHooks === b.mmu)
    XCTAssertEqual(
      type(of: cpu).implementedFeatures, EngineFeatures.implemented(by: .interpreter))
  }
}
