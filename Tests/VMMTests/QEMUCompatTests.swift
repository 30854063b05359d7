import Devices
import TestSupport
import VMM
import XCTest

/// `--qemu-compat`: a guest reads fw_cfg and pc-testdev only when asked for.
final class QEMUCompatTests: XCTestCase {
  private func status(_ code: [UInt8], compat: Bool) throws -> MachineOutcome {
    var c = MachineConfig(
      kernel: FlatMultiboot.image(code: code), kernelName: "compat", engine: .interpreter)
    c.memorySize = 16 << 20
    c.timeout = 60
    c.qemuCompat = compat
    return try Machine(config: c, console: ConsoleOutput(capturing: ())).run()
  }

  func testFirmwareConfigCPUCount() throws {
    // mov dx,0x510 ; mov ax,5 (NB_CPUS) ; out dx,ax ; inc edx ; in al,dx ; out 0xf4,al ; hlt
    let code: [UInt8] = [
      0x66, 0xBA, 0x10, 0x05, 0x66, 0xB8, 0x05, 0x00, 0x66, 0xEF, 0x42, 0xEC, 0xE6, 0xF4, 0xF4,
    ]
    XCTAssertEqual(try status(code, compat: true), .debugExit(status: 3))
    XCTAssertEqual(try status(code, compat: false), .debugExit(status: 0x1FF), "no device")
  }

  func testTestDeviceMemory() throws {
    // mov dword [0xff000000],42 ; mov eax,[0xff000000] ; out 0xf4,al ; hlt
    let code: [UInt8] = [
      0xC7, 0x05, 0x00, 0x00, 0x00, 0xFF, 0x2A, 0x00, 0x00, 0x00, 0xA1, 0x00, 0x00, 0x00, 0xFF,
      0xE6, 0xF4, 0xF4,
    ]
    XCTAssertEqual(try status(code, compat: true), .debugExit(status: 85))
    XCTAssertEqual(try status(code, compat: false), .debugExit(status: 0x1FF), "no device")
  }
}
