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

extension ConsoleOutputTests {
  /// A guest printing line after line (`seq`) must not cost a write per line; the
  /// first line shows at once, and nothing is lost or reordered.
  func testLinesInABurstShareAWriteAndKeepTheirOrder() {
    var got: [UInt8] = []
    var writes = 0
    let c = ConsoleOutput(handler: {
      got += $0
      writes += 1
    })
    var sent: [UInt8] = []
    for i in 1...2000 { sent += Array("\(i)\n".utf8) }
    c.write(sent[0])
    c.write(sent[1])
    XCTAssertEqual(writes, 1, "the first line is shown at once")
    for b in sent.dropFirst(2) { c.write(b) }
    XCTAssertLessThan(writes, 200, "lines written within milliseconds share writes")
    c.flush()
    XCTAssertEqual(got, sent)
    XCTAssertEqual(UInt64(writes), c.flushes)
  }

  func testAFullBufferIsWrittenWithoutANewline() {
    var writes = 0
    let c = ConsoleOutput(handler: { _ in writes += 1 })
    for _ in 0..<(ConsoleOutput.bufferLimit * 3) { c.write(0x78) }
    XCTAssertEqual(writes, 3)
  }
}
