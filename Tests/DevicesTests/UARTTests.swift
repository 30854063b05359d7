import XCTest

@testable import Devices

final class LineRecorder: InterruptLines {
  var levels: [Int: Bool] = [:]
  var changes = 0
  func setLevel(irq: Int, high: Bool) {
    levels[irq] = high
    changes += 1
  }
}

final class UARTTests: XCTestCase {
  var out: [UInt8] = []
  let lines = LineRecorder()
  lazy var uart = UART16550(irq: IRQLine(4, lines: lines)) { [unowned self] in self.out.append($0) }

  func reg(_ o: UInt16) -> UInt8 { UInt8(uart.ioRead(offset: o, size: 1)) }
  func set(_ o: UInt16, _ v: UInt8) { uart.ioWrite(offset: o, size: 1, value: UInt32(v)) }

  func testTransmitGoesToOutputAndTHRStaysEmpty() {
    set(0, 0x41)
    set(0, 0x0A)
    XCTAssertEqual(out, [0x41, 0x0A])
    XCTAssertEqual(reg(5) & 0x60, 0x60, "THRE and TEMT")
  }

  func testTransmittedBytesAreCountedButNotLoopbackOrDivisor() {
    set(0, 0x41)
    set(3, 0x80)
    set(0, 0x01)  // divisor latch, not a byte
    set(3, 0x03)
    set(4, 0x10)  // loopback: the byte stays inside
    set(0, 0x42)
    set(4, 0x00)
    set(0, 0x43)
    XCTAssertEqual(uart.bytesTransmitted, 2)
    XCTAssertEqual(out, [0x41, 0x43])
  }

  func testDivisorLatchDoesNotTransmit() {
    set(3, 0x80)
    set(0, 0x01)
    set(1, 0x00)
    XCTAssertEqual(reg(0), 0x01)
    set(3, 0x03)
    XCTAssertTrue(out.isEmpty)
    XCTAssertEqual(reg(3), 0x03)
  }

  func testFIFOIdentifiesAs16550A() {
    set(2, 0xC7)
    XCTAssertEqual(reg(2) & 0xC0, 0xC0)
    set(7, 0x5A)
    XCTAssertEqual(reg(7), 0x5A)
  }

  func testReceiveSetsDataReadyAndInterruptOnlyWithOUT2() {
    set(2, 0x01)  // FIFO on, trigger 1
    set(1, 0x01)  // RX data interrupt
    uart.receive([0x61, 0x62])
    XCTAssertEqual(reg(5) & 1, 1)
    XCTAssertEqual(lines.levels[4] ?? false, false, "OUT2 clear gates the IRQ")
    set(4, 0x08)
    XCTAssertEqual(lines.levels[4], true)
    XCTAssertEqual(reg(2) & 0x0F, 0x04)
    XCTAssertEqual(reg(0), 0x61)
    XCTAssertEqual(reg(0), 0x62)
    XCTAssertEqual(reg(5) & 1, 0)
    XCTAssertEqual(lines.levels[4], false)
    XCTAssertEqual(reg(2) & 0x0F, 0x01, "no interrupt pending")
  }

  func testBacklogLosesNothing() {
    set(2, 0x01)
    let input = (0..<100).map { UInt8($0) }
    uart.receive(input)
    var got: [UInt8] = []
    while reg(5) & 1 != 0 { got.append(reg(0)) }
    XCTAssertEqual(got, input)
    XCTAssertEqual(reg(5) & 2, 0, "no overrun")
  }

  func testTHREInterruptClearedByIIRRead() {
    set(4, 0x08)
    set(1, 0x02)
    XCTAssertEqual(lines.levels[4], true)
    XCTAssertEqual(reg(2) & 0x0F, 0x02)
    XCTAssertEqual(lines.levels[4], false)
    set(0, 0x20)  // transmit: THR empty again
    XCTAssertEqual(lines.levels[4], true)
  }

  func testLoopbackEchoesAndMirrorsModemLines() {
    set(4, 0x10 | 0x0A)  // loop, RTS, OUT2
    XCTAssertEqual(reg(6) & 0xF0, 0x90, "CTS from RTS, DCD from OUT2")
    set(0, 0x55)
    XCTAssertTrue(out.isEmpty)
    XCTAssertEqual(reg(0), 0x55)
    set(4, 0x00)
    XCTAssertEqual(reg(6) & 0xF0, 0xB0)
  }
}

extension UARTTests {
  /// A guest that never reads cannot make the host side grow: the UART takes
  /// at most its FIFO plus `hostBacklogLimit`, says how much it took, and
  /// takes more once the guest reads.
  func testHostBacklogIsBoundedAndLosesNothing() {
    let input = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    var taken = uart.receive(input)
    XCTAssertEqual(taken, UART16550.hostBacklogLimit)
    XCTAssertEqual(uart.hostRoom, 1, "one byte moved into the (non-FIFO) holding register")
    var got: [UInt8] = []
    while got.count < input.count {
      if uart.hostRoom > 0 && taken < input.count {
        taken += uart.receive(input[taken...])
      }
      XCTAssertEqual(reg(5) & 1, 1)
      got.append(reg(0))
    }
    XCTAssertEqual(got, input)
    XCTAssertEqual(reg(5) & 3, 0, "empty, no overrun")
    XCTAssertEqual(uart.hostRoom, UART16550.hostBacklogLimit)
  }
}

/// THR empties at once, as in QEMU's 16550A: no transmit time and no timer.
final class UARTTransmitTests: XCTestCase {
  /// Counts rising edges, what an edge-triggered IOAPIC or PIC pin sees.
  final class EdgeRecorder: InterruptLines {
    var level = false
    var rises = 0
    func setLevel(irq: Int, high: Bool) {
      if high && !level { rises += 1 }
      level = high
    }
  }
  let lines = EdgeRecorder()
  var out: [UInt8] = []
  lazy var uart = UART16550(irq: IRQLine(4, lines: lines)) { [unowned self] in self.out.append($0) }
  func reg(_ o: UInt16) -> UInt8 { UInt8(uart.ioRead(offset: o, size: 1)) }
  func set(_ o: UInt16, _ v: UInt8) { uart.ioWrite(offset: o, size: 1, value: UInt32(v)) }

  /// Linux's 8250 handler may return with THRE pending and bytes queued (its pass
  /// limit); only a new edge brings it back, so every byte must give one.
  func testEveryByteGivesTHREANewEdge() {
    set(4, 0x08)  // OUT2
    set(1, 0x02)  // IER.THRI: THR is empty, so THRE is pending at once
    XCTAssertEqual(lines.rises, 1)
    for b in UInt8(0x41)...0x43 { set(0, b) }
    XCTAssertEqual(out, [0x41, 0x42, 0x43])
    XCTAssertEqual(lines.rises, 4, "one edge per byte, IIR never read")
    XCTAssertTrue(lines.level)
    XCTAssertEqual(reg(2) & 0x0F, 0x02)
    XCTAssertFalse(lines.level, "reading IIR acknowledges THRE")
  }

  func testMaskingTHREAfterABurstLowersTheLine() {
    set(4, 0x08)
    set(1, 0x02)
    _ = reg(2)
    set(0, 0x41)
    XCTAssertTrue(lines.level, "THR empty again at once")
    XCTAssertEqual(reg(5) & 0x60, 0x60, "THRE and TEMT")
    set(1, 0x00)  // the driver's buffer ran dry: it masks THRE
    XCTAssertFalse(lines.level)
    XCTAssertEqual(reg(2) & 0x0F, 0x01, "nothing pending while masked")
    set(1, 0x02)
    XCTAssertTrue(lines.level, "unmasking with THR empty raises THRE")
  }

  /// Snapshots written while a transmit time was pending (before THR emptied at once)
  /// restore with the byte gone: THRE pending.
  func testASnapshotWithATransmitInFlightRestoresTHRE() throws {
    set(4, 0x08)
    set(1, 0x02)
    _ = reg(2)
    var s = uart.captureState()
    XCTAssertNil(s.transmitDoneAt)
    s.thrEmptyPending = false
    s.transmitDoneAt = 12_345
    try uart.applyState(s)
    XCTAssertEqual(reg(2) & 0x0F, 0x02)
  }
}
