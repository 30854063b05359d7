import XCTest

/// `linux --root` mistakes are one-line usage errors before anything is fetched or booted.
final class LinuxRootCLITests: XCTestCase {
  func testRootWithRunIsAUsageError() throws {
    let r = try runSwiftVMM(["linux", "--root", "--run", "true"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("give --root or --run, not both"), r.output)
  }
}
