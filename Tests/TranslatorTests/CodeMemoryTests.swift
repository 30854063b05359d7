import Foundation
import XCTest

@testable import Translator

final class CodeMemoryTests: XCTestCase {
  typealias Fn = @convention(c) (UInt64, UInt64) -> UInt64

  /// Generated code runs from the executable view: (a + b) * 3 - 1, through labels and flags.
  func testGeneratedCodeRuns() throws {
    let mem = try CodeMemory(capacity: 4096)
    var e = X86Encoder()
    e.mov(.rax, .rdi)
    e.alu(.add, .rax, .rsi)
    e.imul(.rax, .rax)  // square, to use a two-operand form
    let skip = e.newLabel()
    e.test(.rax, .rax)
    e.jcc(.e, skip)
    e.alu(.sub, .rax, imm: 1)
    e.bind(skip)
    e.ret()
    let p = try XCTUnwrap(mem.install(e.bytes))
    let f = unsafeBitCast(p, to: Fn.self)
    XCTAssertEqual(f(2, 3), 24)
    XCTAssertEqual(f(0, 0), 0)
    XCTAssertEqual(f(UInt64.max, 1), 0)
  }

  /// Patching through the writable view changes what the executable view runs.
  func testPatchIsSeenByTheExecutableView() throws {
    let mem = try CodeMemory(capacity: 4096)
    var e = X86Encoder()
    e.movImm(.rax, 7)
    e.ret()
    let p = try XCTUnwrap(mem.install(e.bytes))
    XCTAssertEqual(unsafeBitCast(p, to: Fn.self)(0, 0), 7)
    mem.patch(at: p + 1, [42, 0, 0, 0])
    XCTAssertEqual(unsafeBitCast(p, to: Fn.self)(0, 0), 42)
  }

  /// W^X: neither view of the code memory is writable and executable at once.
  func testNoMappingIsWritableAndExecutable() throws {
    let mem = try CodeMemory(capacity: 8192)
    _ = mem.install([0xC3])
    // /proc files report size 0: read to the end rather than by size.
    let fh = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/maps"))
    let maps = String(decoding: fh.readDataToEndOfFile(), as: UTF8.self)
    /// The permissions of the mapping containing an address.
    func perms(_ p: UnsafeRawPointer) -> String? {
      let a = UInt(bitPattern: p)
      for line in maps.split(separator: "\n") {
        let f = line.split(separator: " ")
        let range = f[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
        if range.count == 2 && a >= range[0] && a < range[1] { return String(f[1]) }
      }
      return nil
    }
    XCTAssertEqual(perms(mem.executable)?.prefix(3), "r-x")
    XCTAssertEqual(perms(UnsafeRawPointer(mem.writable))?.prefix(3), "rw-")
  }

  /// The cache is bounded: installs fail when full, and a reset makes room again.
  func testFullCacheRefusesAndResetEmpties() throws {
    let mem = try CodeMemory(capacity: 4096)
    let block = [UInt8](repeating: 0xC3, count: 1000)
    var n = 0
    while mem.install(block) != nil { n += 1 }
    XCTAssertEqual(n, 4)  // 1000 bytes, 16-aligned: 4 fit in a page
    XCTAssertNil(mem.install(block))
    mem.reset()
    XCTAssertEqual(mem.resets, 1)
    XCTAssertNotNil(mem.install(block))
  }
}
