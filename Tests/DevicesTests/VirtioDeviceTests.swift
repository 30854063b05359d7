import Foundation
import Memory
import TestSupport
import XCTest

@testable import Devices

final class TransportRecorder: VirtioTransport {
  var used: [Int] = []
  var failures: [VirtqueueError] = []
  func queueUsed(_ index: Int) { used.append(index) }
  func deviceFailed(_ error: VirtqueueError) { failures.append(error) }
}

/// A temporary raw image, removed at the end of the test.
func temporaryImage(_ test: XCTestCase, bytes: Int, fill: UInt8 = 0) throws -> String {
  let path = NSTemporaryDirectory() + "swiftvmm-disk-\(UUID().uuidString).img"
  FileManager.default.createFile(
    atPath: path, contents: Data(repeating: fill, count: bytes))
  test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
  return path
}

final class VirtioBlockTests: XCTestCase {
  var driver: RingDriver!
  var block: VirtioBlock!
  let transport = TransportRecorder()

  func attach(_ path: String, readOnly: Bool = false) throws {
    let mem = try GuestMemory(size: 2 << 20)
    driver = try RingDriver(memory: mem, size: 16)
    block = VirtioBlock(disk: try DiskImage(path: path, readOnly: readOnly), serial: "disk-serial")
    block.activate(
      features: VirtioFeature.version1, queues: [driver.queue], memory: mem, transport: transport)
  }

  func header(_ type: UInt32, sector: UInt64) -> [UInt8] {
    var h: [UInt8] = []
    appendLE(&h, type)
    appendLE(&h, UInt32(0))
    appendLE(&h, sector)
    return h
  }

  /// Submits header + data (readable or writable) + status; returns (status, used length, data).
  @discardableResult
  func request(
    _ type: UInt32, sector: UInt64 = 0, write data: [UInt8] = [], read readLength: Int = 0
  ) throws -> (status: UInt8, used: UInt32, data: [UInt8]) {
    let h = driver.buffer(16, filledWith: header(type, sector: sector))
    var parts: [(UInt64, UInt32, Bool)] = [(h, 16, false)]
    if !data.isEmpty {
      parts.append((driver.buffer(data.count, filledWith: data), UInt32(data.count), false))
    }
    let r = driver.buffer(max(readLength, 1))
    if readLength > 0 { parts.append((r, UInt32(readLength), true)) }
    let s = driver.buffer(1, filledWith: [0xEE])
    parts.append((s, 1, true))
    let before = driver.usedIndex
    driver.addChain(parts)
    try block.queueNotified(0)
    XCTAssertEqual(driver.usedIndex, before &+ 1)
    let status: UInt8 = try driver.memory.read(GuestPhysicalAddress(s))
    let out =
      readLength > 0 ? try driver.memory.readBytes(GuestPhysicalAddress(r), count: readLength) : []
    return (status, driver.usedElement(before).length, out)
  }

  func testWriteThenReadBackAndOnTheHostFile() throws {
    let path = try temporaryImage(self, bytes: 64 * 1024)
    try attach(path)
    let data = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7) }
    XCTAssertEqual(try request(VirtioBlock.RequestType.write, sector: 3, write: data).status, 0)
    XCTAssertEqual(try request(VirtioBlock.RequestType.flush).status, 0)
    let back = try request(VirtioBlock.RequestType.read, sector: 3, read: 1024)
    XCTAssertEqual(back.status, 0)
    XCTAssertEqual(back.used, 1025)
    XCTAssertEqual(back.data, data)
    let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    XCTAssertEqual(Array(file[(3 * 512)..<(3 * 512 + 1024)]), data)
    XCTAssertEqual(transport.used, [0, 0, 0])
  }

  func testGetIDAndCapacity() throws {
    try attach(try temporaryImage(self, bytes: 10 * 512 + 100))
    XCTAssertEqual(block.readConfig(offset: 0, size: 8), 10, "capacity in whole sectors")
    let r = try request(VirtioBlock.RequestType.getID, read: 20)
    XCTAssertEqual(r.status, 0)
    XCTAssertEqual(Array(r.data.prefix(11)), Array("disk-serial".utf8))
    XCTAssertEqual(try request(99).status, VirtioBlock.Status.unsupported)
  }

  func testReadOnlyDiskRefusesWrites() throws {
    let path = try temporaryImage(self, bytes: 8192, fill: 0xAB)
    try attach(path, readOnly: true)
    XCTAssertNotEqual(block.deviceFeatures & VirtioBlock.Feature.readOnly, 0)
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.write, write: [UInt8](repeating: 1, count: 512)).status,
      VirtioBlock.Status.ioError)
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.read, read: 512).data,
      [UInt8](repeating: 0xAB, count: 512))
    XCTAssertEqual(
      [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))),
      [UInt8](repeating: 0xAB, count: 8192))
  }

  func testRequestsPastTheEndOrUnalignedFail() throws {
    try attach(try temporaryImage(self, bytes: 8 * 512))
    XCTAssertEqual(try request(VirtioBlock.RequestType.read, sector: 7, read: 1024).status, 1)
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.read, sector: UInt64.max, read: 512).status, 1)
    XCTAssertEqual(try request(VirtioBlock.RequestType.write, sector: 8, write: [1]).status, 1)
    XCTAssertEqual(try request(VirtioBlock.RequestType.read, sector: 0, read: 100).status, 1)
    XCTAssertEqual(try request(VirtioBlock.RequestType.read, sector: 7, read: 512).status, 0)
  }

  func testWrongDirectionBuffersFailTheRequest() throws {
    try attach(try temporaryImage(self, bytes: 8 * 512))
    // A read whose data buffer is device-readable.
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.read, write: [UInt8](repeating: 0, count: 512)).status, 1)
    // A write whose data buffer is device-writable.
    XCTAssertEqual(try request(VirtioBlock.RequestType.write, read: 512).status, 1)
    // A header in a device-writable buffer.
    let h = driver.buffer(16, filledWith: header(0, sector: 0))
    let s = driver.buffer(1)
    driver.addChain([(h, 16, true), (s, 1, true)])
    try block.queueNotified(0)
    XCTAssertEqual(try driver.memory.read(GuestPhysicalAddress(s), as: UInt8.self), 1)
    // No status byte at all: nothing to report in, so the device needs a reset.
    driver.addChain([(driver.buffer(16, filledWith: header(0, sector: 0)), 16, false)])
    XCTAssertThrowsError(try block.queueNotified(0))
  }

  func testDiscardAndWriteZeroes() throws {
    let path = try temporaryImage(self, bytes: 64 * 1024, fill: 0x5A)
    try attach(path)
    guard block.disk.canPunchHoles || block.disk.canZeroRanges else {
      XCTAssertEqual(block.deviceFeatures & VirtioBlock.Feature.writeZeroes, 0)
      throw XCTSkip("the temporary directory's file system supports no fallocate hole punching")
    }
    func segment(_ sector: UInt64, _ count: UInt32, _ flags: UInt32) -> [UInt8] {
      var s: [UInt8] = []
      appendLE(&s, sector)
      appendLE(&s, count)
      appendLE(&s, flags)
      return s
    }
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.writeZeroes, write: segment(2, 4, 0)).status, 0)
    if block.disk.canPunchHoles {
      XCTAssertEqual(
        try request(VirtioBlock.RequestType.discard, write: segment(16, 8, 0)).status, 0)
    }
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.writeZeroes, write: segment(127, 2, 0)).status, 1)
    XCTAssertEqual(
      try request(VirtioBlock.RequestType.writeZeroes, write: segment(0, 1, 0x80)).status, 1)
    let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    XCTAssertEqual(file.count, 64 * 1024, "KEEP_SIZE")
    XCTAssertEqual(Array(file[1024..<3072]), [UInt8](repeating: 0, count: 2048))
    XCTAssertEqual(file[1023], 0x5A)
    XCTAssertEqual(file[3072], 0x5A)
    if block.disk.canPunchHoles {
      XCTAssertEqual(Array(file[8192..<12288]), [UInt8](repeating: 0, count: 4096))
    }
  }

  func testAdvisoryLockRefusesASecondWriter() throws {
    let path = try temporaryImage(self, bytes: 4096)
    do {
      let writer = try DiskImage(path: path, readOnly: false)
      XCTAssertThrowsError(try DiskImage(path: path, readOnly: false)) { e in
        XCTAssertEqual(e as? DiskImageError, .locked(path))
      }
      XCTAssertThrowsError(try DiskImage(path: path, readOnly: true))
      withExtendedLifetime(writer) {}
    }
    let reader = try DiskImage(path: path, readOnly: true)
    XCTAssertNoThrow(try DiskImage(path: path, readOnly: true), "readers share")
    XCTAssertThrowsError(try DiskImage(path: path, readOnly: false))
    withExtendedLifetime(reader) {}
  }

  func testHostErrors() throws {
    XCTAssertThrowsError(try DiskImage(path: "/nonexistent/disk.img", readOnly: false)) { e in
      XCTAssertTrue("\(e)".contains("No such file"), "\(e)")
    }
    XCTAssertThrowsError(try DiskImage(path: NSTemporaryDirectory(), readOnly: true)) { e in
      XCTAssertEqual(e as? DiskImageError, .notAFile(NSTemporaryDirectory()))
    }
    XCTAssertThrowsError(try DiskImage(path: try temporaryImage(self, bytes: 100), readOnly: false))
  }
}

final class VirtioEntropyConsoleTests: XCTestCase {
  func testEntropyFillsWritableBuffers() throws {
    let mem = try GuestMemory(size: 2 << 20)
    let d = try RingDriver(memory: mem)
    let rng = VirtioEntropy()
    let t = TransportRecorder()
    rng.activate(features: 0, queues: [d.queue], memory: mem, transport: t)
    d.addChain([(0x50000, 64, true), (0x51000, 64, true)])
    try rng.queueNotified(0)
    XCTAssertEqual(d.usedElement(0).length, 128)
    let bytes = try mem.readBytes(GuestPhysicalAddress(0x50000), count: 64)
    XCTAssertGreaterThan(Set(bytes).count, 16, "random bytes, not zeros")
    XCTAssertEqual(t.used, [0])
  }

  func testConsoleTransmitsAndReceivesWhenBuffersArePosted() throws {
    let mem = try GuestMemory(size: 2 << 20)
    let rx = try RingDriver(memory: mem)
    let tx = RingDriver.sharing(mem, desc: 0x70000, avail: 0x71000, used: 0x72000)
    var out: [UInt8] = []
    let console = VirtioConsole { out += $0 }
    let t = TransportRecorder()
    console.receive(Array("early".utf8))
    console.activate(features: 0, queues: [rx.queue, tx.queue], memory: mem, transport: t)
    let msg = Array("hello, hvc0\n".utf8)
    tx.addChain([(tx.buffer(msg.count, filledWith: msg), UInt32(msg.count), false)])
    try console.queueNotified(1)
    XCTAssertEqual(out, msg)
    XCTAssertTrue(console.hasBacklog, "no receive buffer posted yet")
    rx.addChain([(0x50000, 3, true)])
    rx.addChain([(0x50010, 16, true)])
    try console.queueNotified(0)
    XCTAssertFalse(console.hasBacklog)
    XCTAssertEqual(rx.usedElement(0).length, 3)
    XCTAssertEqual(rx.usedElement(1).length, 2)
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(0x50000), count: 3), Array("ear".utf8))
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(0x50010), count: 2), Array("ly".utf8))
    XCTAssertEqual(t.used, [1, 0])
  }
}

extension RingDriver {
  /// A second queue in the same memory, at other addresses.
  static func sharing(_ mem: GuestMemory, desc: UInt64, avail: UInt64, used: UInt64) -> RingDriver {
    let d = try! RingDriver(memory: mem, desc: desc, avail: avail, used: used)
    d.heap = 0x78000
    return d
  }
}

final class VirtioDeviceFuzzTests: XCTestCase {
  /// Random chains (random types, sectors, lengths, directions) into each
  /// device: requests fail or the device asks for a reset, nothing traps.
  func testRandomRequestsIntoEachDevice() throws {
    var rng = SeededRandom(seed: 0x6465_7673)
    let mem = try GuestMemory(size: 2 << 20)
    let disk = try DiskImage(path: try temporaryImage(self, bytes: 256 * 1024), readOnly: false)
    var consoleBytes = 0
    var framesSent = 0
    let net = VirtioNet(mac: [2, 0, 0, 0, 0, 1]) { _ in framesSent += 1 }
    let devices: [VirtioDevice] = [
      VirtioBlock(disk: disk, serial: "fuzz"), VirtioEntropy(),
      VirtioConsole { consoleBytes += $0.count }, net,
    ]
    let cases = 4000
    var served = 0
    var refused = 0
    for n in 0..<cases {
      let device = devices[n % devices.count]
      let queues = try device.queueMaxSizes.enumerated().map { i, _ in
        try RingDriver(
          memory: mem, size: 16, desc: 0x10000 + 0x8000 * UInt64(i),
          avail: 0x12000 + 0x8000 * UInt64(i), used: 0x14000 + 0x8000 * UInt64(i))
      }
      device.activate(
        features: VirtioFeature.version1, queues: queues.map(\.queue), memory: mem,
        transport: TransportRecorder())
      let q = queues[Int.random(in: 0..<queues.count, using: &rng)]
      // A plausible request header in a fixed buffer, randomised.
      var h: [UInt8] = []
      appendLE(&h, [0, 1, 4, 8, 11, 13, 99][Int.random(in: 0..<7, using: &rng)] as UInt32)
      appendLE(&h, UInt32(0))
      appendLE(&h, UInt64.random(in: 0...600, using: &rng))
      try mem.write(GuestPhysicalAddress(0x50000), bytes: h)
      for i in 0..<Int(q.size) {
        q.setDescriptor(
          UInt16(i),
          address: Bool.random(using: &rng)
            ? 0x50000 : UInt64.random(in: 0x50000...0x1F_0000, using: &rng),
          length: [16, 1, 512, 4096, UInt32.random(in: 0...70000, using: &rng)][
            Int.random(in: 0..<5, using: &rng)],
          flags: UInt16.random(in: 0...3, using: &rng),
          next: UInt16.random(in: 0...16, using: &rng))
      }
      q.offer(UInt16.random(in: 0...16, using: &rng))
      if device === net {
        // Frames from the back-end of any size, into whatever the guest posted.
        net.receive(
          (0..<Int.random(in: 0...2000, using: &rng)).map { UInt8(truncatingIfNeeded: $0) })
      }
      do {
        try device.queueNotified(queues.firstIndex { $0 === q }!)
        served += 1
      } catch {
        refused += 1
      }
      device.reset()
    }
    print(
      "virtio device fuzz: \(cases) chains, \(served) served, \(refused) refused; virtio-net: \(framesSent) frames sent, \(net.counters.malformedTransmits) malformed, \(net.counters.receiveDrops) receive drops"
    )
    XCTAssertGreaterThan(served, 0)
  }
}
