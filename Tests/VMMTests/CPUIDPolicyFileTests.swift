import Engine
import Foundation
import KVM
import TestSupport
import XCTest

@testable import VMM

/// Policy files as users write them: strict keys, places in errors, hex numbers,
/// and one rule for the default policy on every engine (docs/CPUID.md).
final class CPUIDPolicyFileTests: XCTestCase {
  func parseError(_ json: String) -> String {
    do {
      _ = try CPUIDPolicy.parse(json: Array(json.utf8), name: "p.json")
      return "accepted"
    } catch {
      return "\(error)"
    }
  }

  func testUnknownKeyIsRefusedWithItsPathAndASuggestion() {
    let e = parseError(#"{"enable": ["popcnt"], "maxBasicleaf": 7}"#)
    XCTAssertTrue(e.contains("unknown key 'maxBasicleaf' at $.maxBasicleaf"), e)
    XCTAssertTrue(e.contains("did you mean 'maxBasicLeaf'?"), e)
    let f = parseError(#"{"colour": "red"}"#)
    XCTAssertTrue(f.contains("unknown key 'colour' at $.colour (keys: base, vendor"), f)
  }

  func testSyntaxErrorSaysLineAndColumn() {
    let e = parseError(
      "{\n  \"enable\": [\"popcnt\"],\n  \"disable\": [\"nx\"]\n  \"hypervisor\": \"kvm\"\n}\n")
    XCTAssertTrue(e.contains("not valid JSON at line 4, column 3"), e)
    XCTAssertTrue(parseError("").contains("the file is empty"))
  }

  func testTypeErrorsSayWhere() {
    XCTAssertTrue(parseError(#"{"enable": [1]}"#).contains("$.enable[0]: expected a string"))
    XCTAssertTrue(
      parseError(#"{"enable": "sse2"}"#).contains("$.enable: expected a list of strings"))
    XCTAssertTrue(parseError("[1]").contains("$: expected one JSON object"))
    XCTAssertTrue(
      parseError(#"{"maxExtendedLeaf": "0xZZ"}"#).contains(
        "$.maxExtendedLeaf: '0xZZ' is not a number"))
    XCTAssertTrue(parseError(#"{"family": -1}"#).contains("$.family: expected a number"))
  }

  func testUnknownFeatureSuggestsTheNearestName() {
    let e = parseError(#"{"enable": ["sse42"]}"#)
    XCTAssertTrue(e.contains("unknown CPU feature 'sse42'"), e)
    XCTAssertTrue(e.contains("did you mean 'sse4_2'?"), e)
    XCTAssertTrue(e.contains("--list-features"), e)
  }

  func testNumbersMayBeHexStrings() throws {
    let p = try CPUIDPolicy.parse(
      json: Array(
        #"{"maxExtendedLeaf": "0x80000008", "maxBasicLeaf": "0xd", "family": "25"}"#.utf8),
      name: "p.json")
    XCTAssertEqual(p.lookup(leaf: 0x8000_0000, subleaf: 0).eax, 0x8000_0008)
    XCTAssertEqual(p.lookup(leaf: 0, subleaf: 0).eax, 0xD)
    let eax = p.lookup(leaf: 1, subleaf: 0).eax
    XCTAssertEqual((eax >> 8) & 0xF + (eax >> 20) & 0xFF, 25)
  }

  /// Without --cpuid every engine gets the default policy less what it lacks; an
  /// explicit policy must fit. `swiftvmm cpuid` and `run` use the same function.
  func testDefaultPolicyRuleIsTheSameForEveryEngine() throws {
    for engine in EngineKind.allCases {
      if engine == .kvm && !KVMHost.probe().isUsable { continue }
      let implemented = EngineFeatures.implemented(by: engine)
      let p = try CPUIDPolicy.forEngine(nil, engine: engine)
      XCTAssertEqual(p, CPUIDPolicy.default.masked(to: implemented))
      XCTAssertTrue(p.enabledFeatures.allSatisfy { implemented.contains($0.name) })
    }
    var s = CPUIDPolicySpec()
    s.enable = ["avx2"]
    XCTAssertThrowsError(try CPUIDPolicy.forEngine(try s.build(), engine: .interpreter))
  }

  func testCPUIDCommandAgreesWithRunOnKVM() throws {
    let host = KVMHost.probe()
    guard host.isUsable else { throw XCTSkip("needs /dev/kvm: \(host.openError ?? "")") }
    let c = try runSwiftVMM(["cpuid", "--engine", "kvm"])
    let r = try runSwiftVMM([
      "run", "--engine", "kvm", "--kernel", try GuestImages.path("hello.elf"),
    ])
    XCTAssertEqual(c.status, 0, c.output)
    XCTAssertEqual(r.status, 1, r.output)
    let features = c.output.split(separator: "\n").first { $0.hasPrefix("features: ") }
    let expected = try CPUIDPolicy.forEngine(nil, engine: .kvm).enabledFeatures.map(\.name)
    XCTAssertEqual(features.map(String.init), "features: " + expected.joined(separator: " "))
  }

  func testListFeatures() throws {
    let r = try runSwiftVMM(["cpuid", "--list-features"])
    XCTAssertEqual(r.status, 0, r.output)
    for f in CPUFeature.all {
      XCTAssertTrue(r.output.contains("\n\(f.name) "), f.name)
    }
    XCTAssertTrue(r.output.contains("\nsse2 "), r.output)
  }
}
