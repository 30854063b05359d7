import Foundation
import NIOCore
import XCTest

@testable import APIServer

#if canImport(Glibc)
  import Glibc
#endif

/// The server in-process: a client that stalls mid-request is dropped after the idle timeout.
final class APIServerTests: XCTestCase {
  func testStalledClientIsDisconnected() throws {
    let path = NSTemporaryDirectory() + "swiftvmm-idle-\(UUID().uuidString.prefix(8)).sock"
    let controller = VMController { _ in throw APIServer.StartError(description: "not in this test")
    }
    let server = try APIServer(path: path, controller: controller, idleTimeout: .milliseconds(300))
    defer { server.close() }
    XCTAssertThrowsError(try APIServer(path: path, controller: controller)) {
      XCTAssertTrue("\($0)".contains("already exists"), "\($0)")
    }

    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
      for (i, b) in path.utf8.enumerated() { p[i] = b }
    }
    let ok = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    XCTAssertEqual(ok, 0)
    let partial = Array("PUT /machine-config HTTP/1.1\r\nContent-Length: 40\r\n\r\n{".utf8)
    _ = partial.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let start = Date()
    var buf = [UInt8](repeating: 0, count: 64)
    XCTAssertEqual(read(fd, &buf, buf.count), 0, "the server closes the stalled connection")
    XCTAssertLessThan(Date().timeIntervalSince(start), 4)
    server.close()
    XCTAssertFalse(FileManager.default.fileExists(atPath: path))
  }
}
