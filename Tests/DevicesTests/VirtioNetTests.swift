import Memory
import TestSupport
import XCTest

@testable import Devices

final class VirtioNetTests: XCTestCase {
  let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56]

  func setUp(_ sent: @escaping ([UInt8]) -> Void) throws -> (
    VirtioNet, RingDriver, RingDriver, TransportRecorder, GuestMemory
  ) {
    let mem = try GuestMemory(size: 2 << 20)
    let rx = try RingDriver(memory: mem)
    let tx = RingDriver.sharing(mem, desc: 0x70000, avail: 0x71000, used: 0x72000)
    let net = VirtioNet(mac: mac, transmit: sent)
    let t = TransportRecorder()
    net.activate(
      features: VirtioFeature.version1, queues: [rx.queue, tx.queue], memory: mem, transport: t)
    return (net, rx, tx, t, mem)
  }

  func testConfigSpaceHoldsTheMACAndLinkUp() {
    let net = VirtioNet(mac: mac) { _ in }
    XCTAssertEqual((0..<6).map { UInt8(net.readConfig(offset: $0, size: 1)) }, mac)
    XCTAssertEqual(net.readConfig(offset: 6, size: 2), 1, "VIRTIO_NET_S_LINK_UP")
    XCTAssertEqual(net.deviceType.rawValue, 1)
    XCTAssertNotEqual(net.deviceFeatures & VirtioNet.Feature.mac, 0)
  }

  func testTransmitStripsTheHeaderAndCountsMalformedFrames() throws {
    var sent: [[UInt8]] = []
    let (net, _, tx, t, _) = try setUp { sent.append($0) }
    let frame = (0..<60).map { UInt8($0) }
    let header = [UInt8](repeating: 0, count: VirtioNet.headerSize)
    // Header and frame in two descriptors, as Linux sends them.
    tx.addChain([
      (tx.buffer(12, filledWith: header), 12, false),
      (tx.buffer(frame.count, filledWith: frame), UInt32(frame.count), false),
    ])
    // A chain shorter than a header plus an Ethernet header, and one past the MTU.
    tx.addChain([(tx.buffer(8, filledWith: [1, 2, 3]), 8, false)])
    tx.addChain([(tx.buffer(3000), 3000, false)])
    try net.queueNotified(1)
    XCTAssertEqual(sent, [frame])
    XCTAssertEqual(net.counters.framesTransmitted, 1)
    XCTAssertEqual(net.counters.malformedTransmits, 2)
    XCTAssertEqual(tx.usedIndex, 3, "malformed chains are returned, not leaked")
    XCTAssertEqual(t.used, [1])
    XCTAssertTrue(t.failures.isEmpty)
  }

  func testReceiveWaitsForBuffersThenWritesHeaderAndFrame() throws {
    let (net, rx, _, t, mem) = try setUp { _ in }
    let frame = (0..<100).map { UInt8(255 - $0) }
    XCTAssertTrue(net.receive(frame))
    XCTAssertTrue(net.hasBacklog)
    rx.addChain([(0x50000, 1526, true)])
    try net.queueNotified(0)
    XCTAssertFalse(net.hasBacklog)
    XCTAssertEqual(rx.usedElement(0).length, UInt32(12 + frame.count))
    let bytes = try mem.readBytes(GuestPhysicalAddress(0x50000), count: 12 + frame.count)
    XCTAssertEqual(Array(bytes[12...]), frame)
    XCTAssertEqual(bytes[10], 1, "num_buffers")
    XCTAssertEqual(t.used, [0])
  }

  func testOversizeAndUnfittableFramesAreDroppedAndCounted() throws {
    let (net, rx, _, _, _) = try setUp { _ in }
    XCTAssertFalse(net.receive([UInt8](repeating: 1, count: 4000)))
    rx.addChain([(0x50000, 40, true)])
    net.receive([UInt8](repeating: 2, count: 100))
    XCTAssertEqual(net.counters.receiveDrops, 2)
    XCTAssertEqual(rx.usedElement(0).length, 0)
    for _ in 0..<(VirtioNet.maxBacklogFrames + 10) { net.receive([0, 1, 2]) }
    XCTAssertEqual(net.counters.receiveDrops, 12, "the backlog is bounded")
  }
}
