import Memory
import XCTest

@testable import Boot

final class SMBIOSTablesTests: XCTestCase {
  func testEntryPointAndStructuresParseBack() throws {
    let mem = try GuestMemory(size: 16 << 20)
    let ep = try SMBIOSTables.install(into: mem)
    let e = try mem.readBytes(GuestPhysicalAddress(ep), count: 31)
    XCTAssertEqual(Array(e[0..<4]), Array("_SM_".utf8))
    XCTAssertEqual(e.reduce(UInt8(0), &+), 0, "entry point checksum")
    XCTAssertEqual(Array(e[16..<21]), Array("_DMI_".utf8))
    XCTAssertEqual(e[16..<31].reduce(UInt8(0), &+), 0, "intermediate checksum")
    let length = Int(e[22]) | Int(e[23]) << 8
    let address = UInt64(e[24]) | UInt64(e[25]) << 8 | UInt64(e[26]) << 16 | UInt64(e[27]) << 24
    let count = Int(e[28]) | Int(e[29]) << 8
    let t = try mem.readBytes(GuestPhysicalAddress(address), count: length)
    // Walk the structures: formatted length, then strings up to a double NUL.
    var o = 0
    var types: [UInt8] = []
    var strings: [[String]] = []
    while o < t.count {
      types.append(t[o])
      var p = o + Int(t[o + 1])
      var found: [String] = []
      if t[p] == 0 && t[p + 1] == 0 {
        p += 2  // no strings
      } else {
        while t[p] != 0 {
          let start = p
          while t[p] != 0 { p += 1 }
          found.append(String(decoding: t[start..<p], as: UTF8.self))
          p += 1
        }
        p += 1
      }
      strings.append(found)
      o = p
    }
    XCTAssertEqual(types, [0, 1, 127])
    XCTAssertEqual(types.count, count)
    XCTAssertEqual(strings[0], ["SwiftVMM", "1.0", "11/24/2026"])
    XCTAssertEqual(strings[1], ["SwiftVMM", "SwiftVMM PC", "1.0"])
    XCTAssertEqual(o, length, "table length covers exactly the structures")
  }
}
