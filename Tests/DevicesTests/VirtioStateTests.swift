import Foundation
import Memory
import TestSupport
import XCTest

@testable import Devices

/// virtio-console and virtio-net saved through their transport's snapshot part and
/// restored into fresh devices over the same guest memory (as a machine restores
/// RAM): queues go on where they were, and host input waiting for receive buffers
/// is delivered once the driver posts them.
final class VirtioStateTests: XCTestCase {
  /// A transport over `device` with queues 0 (rx) and 1 (tx) set up by a driver and
  /// DRIVER_OK set, and the two rings' driver sides.
  func started(_ device: VirtioDevice, _ memory: GuestMemory) throws -> (
    VirtioPCI, RingDriver, RingDriver
  ) {
    let pci = try VirtioPCI(device: device, memory: memory, name: "test")
    let rx = try RingDriver(memory: memory, size: 16)
    let tx = try RingDriver(
      memory: memory, size: 16, desc: 0x70000, avail: 0x71000, used: 0x72000)
    tx.heap = 0x80000
    func w(_ o: UInt64, _ s: Int, _ v: UInt64) {
      pci.barWrite(bar: 0, offset: o, size: s, value: v)
    }
    w(0x14, 1, 0)
    w(0x14, 1, 3)
    for sel in 0..<2 as Range<UInt64> {
      w(0x08, 4, sel)
      w(0x0C, 4, VirtioFeature.version1 >> (32 * sel) & 0xFFFF_FFFF)
    }
    w(0x14, 1, 0xB)
    for (i, r) in [rx, tx].enumerated() {
      w(0x16, 2, UInt64(i))
      w(0x18, 2, 16)
      w(0x20, 8, r.desc)
      w(0x28, 8, r.avail)
      w(0x30, 8, r.used)
      w(0x1C, 2, 1)
    }
    w(0x14, 1, 0xF)
    XCTAssertEqual(pci.barRead(bar: 0, offset: 0x14, size: 1), 0xF)
    return (pci, rx, tx)
  }

  func notify(_ pci: VirtioPCI, _ queue: UInt64) {
    pci.barWrite(bar: 0, offset: 0x3000 + 4 * queue, size: 2, value: queue)
  }

  func testConsoleQueuesAndPendingInputSurviveARestore() throws {
    let mem = try GuestMemory(size: 2 << 20)
    var out1: [UInt8] = []
    let c1 = VirtioConsole { out1 += $0 }
    let (p1, rx, tx) = try started(c1, mem)
    tx.addChain([(tx.buffer(3, filledWith: Array("one".utf8)), 3, false)])
    notify(p1, 1)
    XCTAssertEqual(out1, Array("one".utf8))
    // Typed while the guest has no receive buffer: waits in the device.
    c1.receive(Array("typed".utf8))
    XCTAssertTrue(c1.hasBacklog)
    let record = try p1.saveState()

    var out2: [UInt8] = []
    let c2 = VirtioConsole { out2 += $0 }
    let p2 = try VirtioPCI(device: c2, memory: mem, name: "test")
    try p2.restoreState(record)
    XCTAssertTrue(c2.hasBacklog)
    XCTAssertEqual(c2.transmitChains, 1)
    XCTAssertEqual(try p2.saveState(), record, "the restored part saves the same state")
    rx.addChain([(0x50000, 64, true)])
    notify(p2, 0)
    XCTAssertEqual(rx.usedIndex, 1)
    XCTAssertEqual(rx.usedElement(0).length, 5)
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(0x50000), count: 5), Array("typed".utf8))
    tx.addChain([(tx.buffer(3, filledWith: Array("two".utf8)), 3, false)])
    notify(p2, 1)
    XCTAssertEqual(out2, Array("two".utf8))
    XCTAssertEqual(tx.usedIndex, 2, "the transmit ring goes on from the saved index")
  }

  func testNetBacklogAndCountersSurviveARestore() throws {
    let mem = try GuestMemory(size: 2 << 20)
    let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56]
    var sent: [[UInt8]] = []
    let n1 = VirtioNet(mac: mac) { sent.append($0) }
    let (p1, rx, tx) = try started(n1, mem)
    let frame = (0..<60).map { UInt8($0) }
    tx.addChain([(tx.buffer(72, filledWith: [UInt8](repeating: 0, count: 12) + frame), 72, false)])
    notify(p1, 1)
    XCTAssertEqual(sent, [frame])
    let incoming = (0..<80).map { UInt8(200 - $0) }
    XCTAssertTrue(n1.receive(incoming))
    let record = try p1.saveState()

    let n2 = VirtioNet(mac: mac) { sent.append($0) }
    let p2 = try VirtioPCI(device: n2, memory: mem, name: "test")
    try p2.restoreState(record)
    XCTAssertEqual(n2.counters, n1.counters)
    rx.addChain([(0x50000, 1526, true)])
    notify(p2, 0)
    XCTAssertEqual(rx.usedElement(0).length, UInt32(12 + incoming.count))
    XCTAssertEqual(
      Array(try mem.readBytes(GuestPhysicalAddress(0x50000), count: 12 + incoming.count)[12...]),
      incoming)
    XCTAssertEqual(n2.counters.framesReceived, 1)
  }

  func testBadDeviceRecordsAreRefused() throws {
    let mem = try GuestMemory(size: 2 << 20)
    let c1 = VirtioConsole { _ in }
    let (p1, _, _) = try started(c1, mem)
    let record = try p1.saveState()
    // A console record for a network device, and a device record that is not one.
    let net = try VirtioPCI(
      device: VirtioNet(mac: [2, 0, 0, 0, 0, 1]) { _ in }, memory: mem, name: "n")
    XCTAssertThrowsError(try net.restoreState(record))
    XCTAssertFalse(VirtioConsole { _ in }.restoreDeviceState(Array("{}".utf8)))
    let huge = VirtioConsole.State(
      backlog: Data(count: VirtioConsole.maxBacklog + 1), bytesTransmitted: 0, transmitChains: 0)
    XCTAssertFalse(
      VirtioConsole { _ in }.restoreDeviceState(Array(try JSONEncoder().encode(huge))),
      "a backlog over the bound is refused")
    let frames = VirtioNet.State(
      backlog: [Data(count: VirtioNet.maxFrameSize + 1)], framesTransmitted: 0,
      bytesTransmitted: 0, framesReceived: 0, bytesReceived: 0, malformedTransmits: 0,
      receiveDrops: 0)
    XCTAssertFalse(
      VirtioNet(mac: [2, 0, 0, 0, 0, 1]) { _ in }.restoreDeviceState(
        Array(try JSONEncoder().encode(frames))))
  }
}
