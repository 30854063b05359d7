import Foundation
import XCTest

@testable import VMM

final class VirtioConfigTests: XCTestCase {
  func testDiskSpecs() throws {
    let path = NSTemporaryDirectory() + "swiftvmm-cfg-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: path, contents: Data(count: 4096))
    defer { try? FileManager.default.removeItem(atPath: path) }
    XCTAssertEqual(try VirtioConfig.parseDisk(path), DiskSpec(path: path))
    XCTAssertEqual(
      try VirtioConfig.parseDisk("\(path),readonly,id=data0"),
      DiskSpec(path: path, readOnly: true, id: "data0"))
    let c = try VirtioConfig(disks: [path, "\(path),ro"], console: "virtio", entropy: true)
    XCTAssertEqual(c.disks.count, 2)
    XCTAssertEqual(c.console, .virtio)
    XCTAssertTrue(c.entropy)
  }

  func testOneLineErrorsBeforeBoot() throws {
    let path = NSTemporaryDirectory() + "swiftvmm-cfg-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: path, contents: Data(count: 4096))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let cases: [(String, VirtioConfigError)] = [
      ("/nonexistent/x.img", .missing("/nonexistent/x.img")),
      (NSTemporaryDirectory(), .directory(NSTemporaryDirectory())),
      ("", .malformed("--disk '': expected PATH[,readonly][,id=NAME]")),
      (
        "\(path),rw",
        .malformed("--disk '\(path),rw': unknown option 'rw' (known: readonly, id=NAME)")
      ),
    ]
    for (spec, expected) in cases {
      XCTAssertThrowsError(try VirtioConfig.parseDisk(spec)) { e in
        XCTAssertEqual(e as? VirtioConfigError, expected)
        XCTAssertFalse("\(e)".contains("\n"))
      }
    }
    XCTAssertThrowsError(try VirtioConfig.parseDisk("\(path),id="))
    XCTAssertThrowsError(try VirtioConfig.parseDisk("\(path),id=has space"))
    XCTAssertThrowsError(
      try VirtioConfig.parseDisk("\(path),id=\(String(repeating: "x", count: 21))"))
    XCTAssertThrowsError(try VirtioConfig(disks: [], console: "vga", entropy: false))
    XCTAssertThrowsError(
      try VirtioConfig(disks: ["\(path),id=a", "\(path),ro,id=a"], console: nil, entropy: false))
  }
}
