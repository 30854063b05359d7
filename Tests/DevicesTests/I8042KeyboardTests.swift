import TestSupport
import XCTest

@testable import Devices

/// The i8042's keyboard: the protocol Linux's atkbd speaks, IRQ 1, and Ctrl-Alt-Del.
final class I8042KeyboardTests: XCTestCase {
  let lines = LineRecorder()
  lazy var k: I8042Device = {
    let d = I8042Device(control: MachineControl())
    d.irq = IRQLine(1, lines: lines)
    return d
  }()

  func command(_ c: UInt8, _ data: UInt8? = nil) {
    k.ioWrite(offset: 4, size: 1, value: UInt32(c))
    if let data { k.ioWrite(offset: 0, size: 1, value: UInt32(data)) }
  }
  func toKeyboard(_ b: UInt8) { k.ioWrite(offset: 0, size: 1, value: UInt32(b)) }
  func drain() -> [UInt8] {
    var out: [UInt8] = []
    while k.ioRead(offset: 4, size: 1) & 1 != 0 { out.append(UInt8(k.ioRead(offset: 0, size: 1))) }
    return out
  }

  func testKeyboardAnswersAtkbdProbe() {
    toKeyboard(0xFF)
    XCTAssertEqual(drain(), [0xFA, 0xAA], "reset: ack, self-test passed")
    toKeyboard(0xF2)
    XCTAssertEqual(drain(), [0xFA, 0xAB, 0x83], "an MF2 keyboard")
    toKeyboard(0xF0)
    toKeyboard(0x00)
    XCTAssertEqual(drain(), [0xFA, 0xFA, 0x02], "scan code set 2")
    toKeyboard(0xED)
    toKeyboard(0x07)
    XCTAssertEqual(drain(), [0xFA, 0xFA], "LEDs take their argument")
    toKeyboard(0xEE)
    XCTAssertEqual(drain(), [0xEE])
  }

  func testIRQ1FollowsTheOutputBufferWhenEnabled() {
    toKeyboard(0xF2)
    XCTAssertNotEqual(lines.levels[1], true, "interrupts off in the command byte")
    _ = drain()
    command(0x60, 0x01)  // keyboard interrupt on, translation off
    toKeyboard(0xF2)
    XCTAssertEqual(lines.levels[1], true)
    let before = lines.changes
    XCTAssertEqual(k.ioRead(offset: 0, size: 1), 0xFA)
    // The next byte makes a new edge: low, then high again.
    XCTAssertEqual(lines.changes, before + 2)
    XCTAssertEqual(lines.levels[1], true)
    _ = drain()
    XCTAssertEqual(lines.levels[1], false)
  }

  func testCtrlAltDelInBothScanCodeSets() {
    command(0x60, 0x01)
    XCTAssertTrue(k.pressCtrlAltDel())
    XCTAssertEqual(drain(), [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14])
    command(0x60, 0x41)  // translated to set 1, as Linux leaves a PC's controller
    XCTAssertTrue(k.pressCtrlAltDel())
    XCTAssertEqual(drain(), [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D])
    command(0x60, 0x11)  // keyboard clock disabled
    XCTAssertFalse(k.pressCtrlAltDel())
    command(0x60, 0x01)
    toKeyboard(0xF5)  // scanning off
    _ = drain()
    XCTAssertFalse(k.pressCtrlAltDel())
  }

  /// A guest that writes and never reads cannot grow the output buffer.
  func testNeverTrapAndOutputStaysBounded() {
    var rng = SeededRandom(seed: 8042)
    for _ in 0..<20_000 {
      let port: UInt16 = Bool.random(using: &rng) ? 0 : 4
      if UInt8.random(in: 0...3, using: &rng) == 0 {
        _ = k.ioRead(offset: port, size: 1)
      } else {
        k.ioWrite(offset: port, size: 1, value: UInt32(UInt8.random(in: 0...255, using: &rng)))
      }
      if Int.random(in: 0..<100, using: &rng) == 0 { k.pressCtrlAltDel() }
    }
    var n = 0
    while k.ioRead(offset: 4, size: 1) & 1 != 0 && n < 1000 {
      _ = k.ioRead(offset: 0, size: 1)
      n += 1
    }
    XCTAssertLessThanOrEqual(n, I8042Device.outputLimit)
  }
}
