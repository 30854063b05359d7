import XCTest

@testable import VMM

final class ConsoleEscapeTests: XCTestCase {
  func testOrdinaryAndSignalKeysGoToTheGuest() {
    var e = ConsoleEscape()
    let r = e.process([0x61, 0x03, 0x1A, 0x1C, 0x04, 0x0D])  // a, ^C, ^Z, ^\, ^D, CR
    XCTAssertEqual(r.forGuest, [0x61, 0x03, 0x1A, 0x1C, 0x04, 0x0D])
    XCTAssertEqual(r.commands, [])
  }

  func testEscapeXQuitsAndDropsWhatFollows() {
    var e = ConsoleEscape()
    let r = e.process([0x61, 0x01, UInt8(ascii: "x"), 0x62])
    XCTAssertEqual(r.forGuest, [0x61])
    XCTAssertEqual(r.commands, [.quit])
  }

  func testEscapeTwiceSendsOneEscape() {
    var e = ConsoleEscape()
    let r = e.process([0x01, 0x01, 0x62])
    XCTAssertEqual(r.forGuest, [0x01, 0x62])
    XCTAssertEqual(r.commands, [])
  }

  func testEscapeSplitAcrossReads() {
    var e = ConsoleEscape()
    XCTAssertEqual(e.process([0x61, 0x01]).forGuest, [0x61])
    let r = e.process([UInt8(ascii: "h"), 0x63])
    XCTAssertEqual(r.forGuest, [0x63])
    XCTAssertEqual(r.commands, [.help])
  }

  func testUnknownKeyAfterEscapeIsSwallowed() {
    var e = ConsoleEscape()
    let r = e.process([0x01, UInt8(ascii: "z"), 0x61])
    XCTAssertEqual(r.forGuest, [0x61])
    XCTAssertEqual(r.commands, [])
  }

  func testOtherKeyAndNone() {
    var e = ConsoleEscape(key: 0x1D)  // Ctrl-]
    let r = e.process([0x01, 0x1D, UInt8(ascii: "x")])
    XCTAssertEqual(r.forGuest, [0x01])
    XCTAssertEqual(r.commands, [.quit])
    var none = ConsoleEscape(key: nil)
    XCTAssertEqual(none.process([0x01, UInt8(ascii: "x")]).forGuest, [0x01, UInt8(ascii: "x")])
  }

  func testParse() {
    XCTAssertEqual(ConsoleEscape.parse("ctrl-a"), .some(0x01))
    XCTAssertEqual(ConsoleEscape.parse("C-b"), .some(0x02))
    XCTAssertEqual(ConsoleEscape.parse("^]"), .some(0x1D))
    XCTAssertEqual(ConsoleEscape.parse("Ctrl+Z"), .some(0x1A))
    XCTAssertEqual(ConsoleEscape.parse("none"), .some(nil))
    XCTAssertNil(ConsoleEscape.parse("a"))
    XCTAssertNil(ConsoleEscape.parse("ctrl-"))
    XCTAssertNil(ConsoleEscape.parse("ctrl-1"))
    XCTAssertNil(ConsoleEscape.parse("ctrl-ab"))
    XCTAssertEqual(ConsoleEscape.name(0x01), "Ctrl-A")
  }
}

final class ConsoleEscapeSnapshotTests: XCTestCase {
  func testEscapeSAsksForASnapshotAndTypingGoesOn() {
    var e = ConsoleEscape()
    let r = e.process([0x61, 0x01, UInt8(ascii: "s"), 0x62])
    XCTAssertEqual(r.forGuest, [0x61, 0x62])
    XCTAssertEqual(r.commands, [.snapshot])
    XCTAssertTrue(e.helpText().contains("snapshot"))
  }
}
