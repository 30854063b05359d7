import XCTest

/// `swiftvmm cpuid` shows the x86-64 level the policy reaches.
extension CLITests {
  func testCPUIDPrintsTheMicroarchitectureLevel() throws {
    let d = try swiftvmm(["cpuid"])
    XCTAssertEqual(d.status, 0, d.output)
    XCTAssertTrue(
      d.output.contains("level:  x86-64-v2 (v3 needs: avx avx2 f16c fma xsave)"), d.output)
    XCTAssertTrue(d.output.contains(" sse4_2 "), d.output)
    let m = try swiftvmm(["cpuid", "--policy", "minimal"])
    XCTAssertEqual(m.status, 0, m.output)
    XCTAssertTrue(
      m.output.contains("level:  x86-64-v1 (v2 needs: cx16 popcnt pni ssse3 sse4_1 sse4_2)"),
      m.output)
  }
}
