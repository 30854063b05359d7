import Memory
import TestSupport
import XCTest

@testable import Boot

/// Mutated and random inputs must produce a result or a thrown error, never a crash.
final class BootFuzzTests: XCTestCase {
  func testMutatedBzImageHeadersNeverCrash() throws {
    var rng = SeededRandom(seed: 0x5EED)
    let mem = try GuestMemory(size: 64 << 20)
    let base = makeBzImage(kernelSize: 0x800)
    var outcomes = [0, 0]
    for _ in 0..<2000 {
      var b = base
      for _ in 0..<Int.random(in: 1...6, using: &rng) {
        // Hit the header fields most of the time.
        let o =
          Bool.random(using: &rng)
          ? Int.random(in: 0x1F0..<0x270, using: &rng) : Int.random(in: 0..<b.count, using: &rng)
        b[o] = UInt8.random(in: 0...255, using: &rng)
      }
      if Int.random(in: 0..<10, using: &rng) == 0 {
        b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))
      }
      do {
        _ = try BzImageLoader.load(
          b, commandLine: "x", initrd: [1, 2, 3], rsdp: 0xE0000, into: mem)
        outcomes[0] += 1
      } catch {
        outcomes[1] += 1
      }
      _ = try? BzImageLoader.extractVmlinux(b)
    }
    print("mutated bzImages: \(outcomes[0]) loaded, \(outcomes[1]) refused")
    XCTAssertGreaterThan(outcomes[1], 0)
  }

  func testMutatedPVHImagesNeverCrash() throws {
    var rng = SeededRandom(seed: 0xF00D)
    let mem = try GuestMemory(size: 64 << 20)
    let base = makePVHElf(notes: [("Xen", 18, [0, 0, 0, 1])])
    for _ in 0..<2000 {
      var b = base
      for _ in 0..<Int.random(in: 1...4, using: &rng) {
        b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
      }
      _ = try? PVHLoader.load(b, commandLine: "", initrd: [9], into: mem)
    }
  }

  func testRandomLZ4AndCPIONeverCrash() {
    var rng = SeededRandom(seed: 0xBEEF)
    for _ in 0..<3000 {
      let n = Int.random(in: 0..<200, using: &rng)
      var b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
      if b.count >= 8 {
        b.replaceSubrange(0..<4, with: [0x02, 0x21, 0x4C, 0x18])
        let size = UInt32(b.count - 8)
        b.replaceSubrange(
          4..<8, with: (0..<4).map { UInt8(truncatingIfNeeded: size >> (8 * UInt32($0))) })
      }
      _ = try? LZ4.decompressLegacy(b[...])
      _ = try? CPIO.parse(b)
    }
    let good = CPIO.archive([CPIOEntry("a/b", .file([1, 2, 3])), CPIOEntry("c", .symlink("a"))])
    for _ in 0..<2000 {
      var b = good
      b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
      _ = try? CPIO.parse(b)
    }
  }
}
