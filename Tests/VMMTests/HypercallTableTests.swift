import Engine
import Interpreter
import X86
import XCTest

@testable import VMM

final class HypercallTableTests: XCTestCase {
  func testUnknownNumberAnswersENOSYS() {
    let t = HypercallTable()
    XCTAssertEqual(t.call(number: 0x1234, arguments: [1, 2, 3, 4]), UInt64(bitPattern: -38))
    XCTAssertEqual(t.unknownCalls, 1)
  }

  func testRegisteredHandlerGetsTheCallAndAnswersRAX() throws {
    let t = HypercallTable()
    var seen: (UInt64, [UInt64])?
    try t.register(7, owner: "test") { nr, args in
      seen = (nr, args)
      return 99
    }
    XCTAssertEqual(t.call(number: 7, arguments: [1, 2, 3, 4]), 99)
    XCTAssertEqual(seen?.0, 7)
    XCTAssertEqual(seen?.1, [1, 2, 3, 4])
    XCTAssertEqual(t.call(number: 8, arguments: [0, 0, 0, 0]), HypercallTable.enosys)
    XCTAssertEqual(t.unknownCalls, 1)
  }

  func testANumberHasOneOwner() throws {
    let t = HypercallTable()
    try t.register(7, owner: "first") { _, _ in 0 }
    XCTAssertThrowsError(try t.register(7, owner: "second") { _, _ in 1 }) {
      XCTAssertEqual($0 as? HypercallTable.RegistrationError, .taken(number: 7, by: "first"))
    }
    XCTAssertEqual(t.call(number: 7, arguments: []), 0)
  }

  /// Only paravirt mode claims the PV MMU's numbers.
  func testPVMMURegistersItsNumbersOnlyInParavirtMode() throws {
    for mode in [MMUMode.direct, .nested, .shadow, .paravirt] {
      let b = try MMUModeTests.Bare(mode: mode, code: [0xF4])
      XCTAssertEqual(
        b.hypercalls.registeredNumbers, mode == .paravirt ? Array(PVMMU.HC.all) : [], mode.name)
    }
  }

  /// A guest's VMCALL with a number nobody registered reads -ENOSYS in RAX.
  func testGuestVMCALLWithUnknownNumberGetsENOSYS() throws {
    // mov eax, 0x5356_0001 (HC_PV_HELLO) ; vmcall ; hlt — not offered outside paravirt mode.
    let code: [UInt8] = [0xB8, 0x01, 0x00, 0x56, 0x53, 0x0F, 0x01, 0xC1, 0xF4]
    let b = try MMUModeTests.Bare(mode: .shadow, code: code)
    XCTAssertEqual(try b.run().0, .halt)
    XCTAssertEqual(try b.cpu.getState().general.rax, HypercallTable.enosys)
    XCTAssertEqual(b.hypercalls.unknownCalls, 1)
  }
}
