import XCTest

@testable import Memory

final class MemoryTests: XCTestCase {
  func testReadWriteInsideRAM() throws {
    let mem = try GuestMemory(size: 2 << 20)
    try mem.write(GuestPhysicalAddress(0x1FFE), value: UInt32(0xDEAD_BEEF))
    XCTAssertEqual(try mem.read(GuestPhysicalAddress(0x1FFE), as: UInt32.self), 0xDEAD_BEEF)
  }

  func testAccessOutsideRAMThrows() throws {
    let mem = try GuestMemory(size: 1 << 20)
    XCTAssertThrowsError(try mem.read(GuestPhysicalAddress(0xFFFFE), as: UInt32.self)) { e in
      XCTAssertEqual(e as? MemoryError, .outsideRAM(GuestPhysicalAddress(0xFFFFE), length: 4))
    }
    XCTAssertThrowsError(try mem.write(GuestPhysicalAddress(UInt64.max - 1), bytes: [1, 2, 3]))
  }

  func testScatteredLayoutMakesGPADifferFromHPA() throws {
    let pool = try HostFramePool(bytes: 4 << 20)
    let mem = try GuestMemory(
      pool: pool, regions: [RAMRegion(start: GuestPhysicalAddress(0), size: 4 << 20)],
      layout: .scattered(seed: 42))
    var differing = 0
    var seen = Set<UInt64>()
    for f in 0..<1024 {
      let hpa = mem.hostPhysical(GuestPhysicalAddress(UInt64(f) << 12))!
      if hpa.rawValue != UInt64(f) << 12 { differing += 1 }
      seen.insert(hpa.rawValue)
    }
    XCTAssertEqual(seen.count, 1024, "every guest frame has its own host frame")
    XCTAssertGreaterThan(differing, 1000)
    // A write that crosses a page boundary lands in two different host frames.
    try mem.write(GuestPhysicalAddress(0x1FFE), value: UInt32(0x1122_3344))
    XCTAssertEqual(try mem.read(GuestPhysicalAddress(0x1FFE), as: UInt32.self), 0x1122_3344)
  }

  func testZeroAndUnalignedSizesAreRejected() {
    XCTAssertThrowsError(try GuestMemory(size: 0))
    XCTAssertThrowsError(try GuestMemory(size: (1 << 20) + 1))
  }

  func testPCLayoutSkipsMMIOHole() {
    let r = GuestMemory.pcRegions(size: 4 << 30)
    XCTAssertEqual(r.count, 2)
    XCTAssertEqual(r[0].size, 3 << 30)
    XCTAssertEqual(r[1].start.rawValue, 4 << 30)
    XCTAssertEqual(r[1].size, 1 << 30)
  }
}

final class HostPieceTests: XCTestCase {
  func testPiecesCoverTheRangeInOrderAndMergeContiguousFrames() throws {
    for layout in [FrameLayout.contiguous, .scattered(seed: 7)] {
      let mem = try GuestMemory(size: 2 << 20, layout: layout)
      let bytes = (0..<10000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
      try mem.write(GuestPhysicalAddress(0x1F00), bytes: bytes)
      var seen: [UInt8] = []
      var pieces = 0
      try mem.forEachHostPiece(GuestPhysicalAddress(0x1F00), count: bytes.count) { p, n in
        seen += UnsafeRawBufferPointer(start: p, count: n)
        pieces += 1
      }
      XCTAssertEqual(seen, bytes)
      if layout == .contiguous {
        XCTAssertEqual(pieces, 1)
      } else {
        XCTAssertGreaterThan(pieces, 1)
      }
    }
  }

  func testPiecesOutsideRAMThrowBeforeAnyCallback() throws {
    let mem = try GuestMemory(size: 1 << 20)
    var called = false
    XCTAssertThrowsError(
      try mem.forEachHostPiece(GuestPhysicalAddress(0xFF000), count: 0x2000) { _, _ in called = true
      })
    XCTAssertThrowsError(
      try mem.forEachHostPiece(GuestPhysicalAddress(UInt64.max - 2), count: 8) { _, _ in
        called = true
      })
    XCTAssertFalse(called)
  }
}
