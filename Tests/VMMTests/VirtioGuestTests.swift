import Engine
import Foundation
import KVM
import TestSupport
import XCTest

@testable import VMM

/// The test-guest virtio driver (Guests/virtio) against our virtio-pci
/// transport, virtio-blk and virtio-rng, without Linux.
final class VirtioGuestTests: XCTestCase {
  func scratchDisk(bytes: Int) -> String {
    let path = NSTemporaryDirectory() + "swiftvmm-vguest-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: path, contents: Data(count: bytes))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
  }

  func config(_ engine: EngineKind, disk: String) throws -> MachineConfig {
    var c = MachineConfig(
      kernel: try GuestImages.bytes("virtio.elf"), kernelName: "virtio.elf", engine: engine)
    c.memorySize = 64 << 20
    c.timeout = 120
    c.virtio = try VirtioConfig(disks: ["\(disk),id=guest-test"], console: nil, entropy: true)
    return c
  }

  func testDriverOnTheInterpreter() throws { try runDriver(.interpreter) }

  /// The same PCI host and virtio devices on KVM (the platform is the VMM's on every engine).
  func testDriverOnKVM() throws {
    let host = KVMHost.probe()
    guard host.isUsable else {
      throw XCTSkip("KVM engine tests need /dev/kvm: \(host.openError ?? "unusable")")
    }
    try runDriver(.kvm)
  }

  func runDriver(_ engine: EngineKind) throws {
    let disk = scratchDisk(bytes: 1 << 20)
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: try config(engine, disk: disk), console: console)
    let o = m.run()
    let out = console.capturedText
    XCTAssertEqual(o, .debugExit(status: 1), out)
    XCTAssertTrue(out.contains("PASS virtio"), out)
    XCTAssertTrue(out.contains("id=\"guest-test\""), out)
    XCTAssertTrue(out.contains("capacity=2048 sectors"), out)
    // The pattern the guest wrote to sector 1 is on the host file.
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: disk)))
    XCTAssertEqual(
      Array(bytes[512..<1024]), (0..<512).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) })
  }

}
