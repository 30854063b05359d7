import Engine
import Foundation
import XCTest

@testable import Interpreter

/// Prints guest MIPS for the CPU-bound guests (a benchmark: asserts only that the guest finished).
/// SWIFTVMM_BENCH_DIV sets the work divisor (default 200; use 1 in release builds for full size).
final class BenchTests: XCTestCase {
  func testBenchMIPS() throws {
    let div = ProcessInfo.processInfo.environment["SWIFTVMM_BENCH_DIV"] ?? "200"
    let only = ProcessInfo.processInfo.environment["SWIFTVMM_BENCH"]
    for b in ["bench_loop", "bench_sort", "bench_crc32", "bench_mem", "bench_chase"] {
      if let o = only, !o.split(separator: ",").contains(Substring(b)) { continue }
      let path = TestMachine.guestDir + "/" + b + ".elf"
      guard FileManager.default.fileExists(atPath: path) else {
        print("SKIP \(b): not built")
        continue
      }
      let m = try TestMachine(ramMiB: 256)
      try m.bootMultiboot(path: path, cmdline: "div=\(div)")
      let t0 = Date()
      let c0 = threadCPUSeconds()
      let stop = try m.run()
      let dt = Date().timeIntervalSince(t0)
      let cpu = threadCPUSeconds() - c0
      let st = m.cpu.statistics()
      let n = Double(st["instructions"] ?? 0)
      XCTAssertEqual(stop, .debugExit(0), m.serial)
      let line = m.serial.split(separator: "\n").last ?? ""
      print(
        String(
          format:
            "BENCH %@ div=%@: %.0f Minstr, %.3f s wall (%.1f MIPS), %.3f s CPU (%.1f MIPS per CPU-second); tlb miss %llu, walks %llu | %@",
          b, div, n / 1e6, dt, n / dt / 1e6, cpu, n / cpu / 1e6, st["tlb.misses"] ?? 0,
          st["mmu.page_walks"] ?? 0, String(line)))
    }
  }
}

/// CPU time of the calling thread (robust against other load on shared machines).
func threadCPUSeconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
