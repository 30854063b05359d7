import Engine
import KVM
import VMM
import X86
import XCTest

/// A vCPU saved between two MMIO exits of one instruction (VCPUSnapshot.mmio) can go
/// back to an interpreter engine only: KVM cannot replay the accesses, so it refuses.
final class KVMSnapshotMMIOTests: XCTestCase {
  func testKVMRefusesAVCPUSavedInsideAnMMIOInstruction() throws {
    try SnapshotTests.requireKVM()
    let a = try Machine(
      config: try SnapshotTests.config("hello.elf", engine: .interpreter),
      console: ConsoleOutput(capturing: ()))
    let k = try Machine(
      config: try SnapshotTests.config("hello.elf", engine: .kvm),
      console: ConsoleOutput(capturing: ()))
    var s = try a.cpu.saveVCPU()
    XCTAssertNil(s.mmio, "a vCPU between instructions carries no MMIO progress")
    try k.cpu.restoreVCPU(s)  // the same state without it restores
    s.mmio = .init(
      done: [.init(address: 0xFEE0_0030, size: 4, isWrite: false, value: 0x14)], queuedWrites: [])
    XCTAssertThrowsError(try k.cpu.restoreVCPU(s)) {
      XCTAssertTrue("\($0)".contains("middle of an I/O instruction"), "\($0)")
    }
  }
}
