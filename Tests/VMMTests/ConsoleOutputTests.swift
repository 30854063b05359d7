import XCTest

@testable import VMM

final class ConsoleOutputTests: XCTestCase {
  func testLineObserverSeesEachCapturedLineOnce() {
    let c = ConsoleOutput(capturing: ())
    var lines: [String] = []
    for b in Array("before\n".utf8) { c.write(b) }
    c.lineObserver = { lines.append(String($0)) }
    for b in Array("one\n\ntwo\npartial".utf8) { c.write(b) }
    XCTAssertEqual(lines, ["one", "", "two"])
    XCTAssertEqual(c.capturedText, "before\none\n\ntwo\npartial")
  }
}
