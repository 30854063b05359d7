import Engine
import Foundation
import X86
import XCTest

@testable import VMM

final class CPUIDPolicyTests: XCTestCase {
  func testDefaultPolicyHasOurSignatureAndHypervisorBit() throws {
    let p = CPUIDPolicy.default
    XCTAssertEqual(p.vendor, "AuthenticAMD")
    XCTAssertEqual(p.brand, "SwiftVMM Virtual CPU")
    XCTAssertTrue(p.has(CPUFeature.named("hypervisor")!))
    let hv = p.lookup(leaf: 0x4000_0000, subleaf: 0)
    XCTAssertEqual(CPUIDPolicy.string(words: [hv.ebx, hv.ecx, hv.edx]), "SwiftVMM")
  }

  func testKVMPolicyShowsKVMSignatureAndClockFeatures() throws {
    let p = try CPUIDPolicy.named("kvm")
    let hv = p.lookup(leaf: 0x4000_0000, subleaf: 0)
    XCTAssertEqual(CPUIDPolicy.string(words: [hv.ebx, hv.ecx, hv.edx]), "KVMKVMKVM")
    XCTAssertTrue(p.has(CPUFeature.named("kvm_clocksource2")!))
  }

  func testSpecSetsVendorBrandFamilyModelStepping() throws {
    var s = CPUIDPolicySpec()
    s.vendor = "AuthenticAMD"
    s.brand = "Test CPU 9000"
    s.family = 25
    s.model = 0x21
    s.stepping = 2
    let p = try s.build()
    XCTAssertEqual(p.vendor, "AuthenticAMD")
    XCTAssertEqual(p.brand, "Test CPU 9000")
    let eax = p.lookup(leaf: 1, subleaf: 0).eax
    XCTAssertEqual(eax & 0xF, 2)
    XCTAssertEqual((eax >> 8) & 0xF, 0xF)
    XCTAssertEqual((eax >> 20) & 0xFF, 25 - 15)
    XCTAssertEqual((eax >> 4) & 0xF | ((eax >> 16) & 0xF) << 4, 0x21)
  }

  func testSpecFromJSONEnablesAndDisables() throws {
    let json = #"{"enable": ["popcnt"], "disable": ["nx"], "hypervisor": "none"}"#
    let p = try JSONDecoder().decode(CPUIDPolicySpec.self, from: Data(json.utf8)).build()
    XCTAssertTrue(p.has(CPUFeature.named("popcnt")!))
    XCTAssertFalse(p.has(CPUFeature.named("nx")!))
    XCTAssertFalse(p.has(CPUFeature.named("hypervisor")!))
    XCTAssertEqual(p.lookup(leaf: 0x4000_0000, subleaf: 0), CPUIDResult())
  }

  func testUnknownFeatureAndBadVendorAreRefused() {
    var s = CPUIDPolicySpec()
    s.enable = ["warp_drive"]
    XCTAssertThrowsError(try s.build()) {
      XCTAssertEqual($0 as? CPUIDPolicyError, .unknownFeature("warp_drive"))
    }
    var v = CPUIDPolicySpec()
    v.vendor = "Short"
    XCTAssertThrowsError(try v.build())
  }

  func testPolicyClaimingUnimplementedFeatureIsRefused() throws {
    var s = CPUIDPolicySpec()
    s.enable = ["avx2"]
    let p = try s.build()
    XCTAssertThrowsError(
      try p.validate(
        engine: "interpreter", implemented: EngineFeatures.implemented(by: .interpreter))
    ) {
      XCTAssertEqual(
        $0 as? CPUIDPolicyError, .unsupportedFeatures(engine: "interpreter", features: ["avx2"]))
    }
    XCTAssertNoThrow(
      try CPUIDPolicy.default.validate(
        engine: "interpreter", implemented: EngineFeatures.implemented(by: .interpreter)))
  }

  func testMaskedDropsOnlyWhatIsMissing() {
    let m = CPUIDPolicy.default.masked(to: ["fpu", "sse2"])
    XCTAssertEqual(Set(m.enabledFeatures.map(\.name)), ["fpu", "sse2"])
  }

  func testBasicLeafAboveMaximumReturnsHighestBasicLeaf() {
    let p = CPUIDPolicy.default
    let max = p.lookup(leaf: 0, subleaf: 0).eax
    XCTAssertEqual(p.lookup(leaf: max + 5, subleaf: 0), p.lookup(leaf: max, subleaf: 0))
  }
}

final class CPUIDLevelTests: XCTestCase {
  func testDefaultPolicyIsV2AndTheInterpreterImplementsAllOfIt() {
    XCTAssertEqual(X86Level.of(.default).level, 2)
    XCTAssertEqual(
      CPUIDPolicy.default.masked(to: EngineFeatures.implemented(by: .interpreter)), .default)
    XCTAssertTrue(CPUIDPolicy.default.formatted().contains("level:  x86-64-v2 (v3 needs: avx"))
  }

  func testLevelsFollowTheFeatureBits() throws {
    XCTAssertEqual(X86Level.of(try CPUIDPolicy.named("minimal")).level, 1)
    var s = CPUIDPolicySpec()
    s.disable = ["sse2"]
    XCTAssertEqual(X86Level.of(try s.build()).level, 0)
    s.disable = ["popcnt"]
    XCTAssertEqual(X86Level.of(try s.build()).missingForNext, ["popcnt"])
  }
}
