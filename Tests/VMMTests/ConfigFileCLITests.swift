import Foundation
import TestSupport
import XCTest

/// `swiftvmm run --config vm.json`, as a user runs it.
final class ConfigFileCLITests: XCTestCase {
  func write(_ text: String) throws -> String {
    let p = NSTemporaryDirectory() + "swiftvmm-vm-\(UUID().uuidString).json"
    try Data(text.utf8).write(to: URL(fileURLWithPath: p))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
    return p
  }

  func testConfigFileBootsTheGuest() throws {
    let kernel = try GuestImages.path("hello.elf")
    let config = try write(
      """
      {"boot-source": {"kernel_image_path": "\(kernel)"},
       "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
       "swiftvmm": {"engine": "interpreter", "timeout": 60}}
      """)
    let r = try runSwiftVMM(["run", "--config", config])
    XCTAssertEqual(r.status, 1, r.output)
    XCTAssertTrue(r.output.hasPrefix("Hello from SwiftVMM guest!\n"), r.output)
  }

  func testErrorsNameTheFieldAndExit66() throws {
    let config = try write(#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 32, "cpus": 1}}"#)
    let r = try runSwiftVMM(["run", "--config", config])
    XCTAssertEqual(r.status, 66, r.output)
    XCTAssertEqual(r.output, "swiftvmm: \(config): machine-config.cpus: unknown key\n")
    let missing = try runSwiftVMM(["run", "--config", "/nonexistent/vm.json"])
    XCTAssertEqual(missing.status, 66, missing.output)
    XCTAssertTrue(missing.output.contains("'/nonexistent/vm.json': does not exist"), missing.output)
  }

  func testCommandLineMayNotDescribeTheMachineTwice() throws {
    let config = try write(#"{}"#)
    let r = try runSwiftVMM(["run", "--config", config, "--memory", "64"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("--memory cannot be combined with --config"), r.output)
  }
}
