import Engine
import Foundation
import Memory
import X86

/// The engine's last debug stop, waiting for the debugger to collect it.
final class MachineDebugStops {
  private let lock = NSLock()
  private var stop: DebugStop?
  /// Called on the vCPU thread after a stop is recorded (the gdb server wakes up).
  var onStop: (@Sendable () -> Void)? {
    get { lock.withLock { _onStop } }
    set { lock.withLock { _onStop = newValue } }
  }
  private var _onStop: (@Sendable () -> Void)?

  func record(_ s: DebugStop) {
    let notify = lock.withLock {
      stop = s
      return _onStop
    }
    notify?()
  }

  func take() -> DebugStop? {
    lock.withLock {
      defer { stop = nil }; return stop
    }
  }
}

extension Machine {
  /// vCPU thread: the engine stopped for the debugger. The run loop parks at its next
  /// check (before running the guest again) until the debugger resumes it.
  func debugStopped(_ stop: DebugStop) {
    // `pause()` waits for the park, which only this thread can do: ask from another
    // thread and go on once the request is in.
    let requested = DispatchSemaphore(value: 0)
    Thread.detachNewThread { [self] in
      _ = requests.pause(wake: {
        noteHostWork()
        requested.signal()
      })
      requested.signal()  // the loop ended before the request could be made
    }
    requested.wait()
    debugStops.record(stop)
  }

  /// Reads guest-virtual memory as the boot vCPU sees it now, walking its page tables
  /// with the VMM's walker (no A/D updates). Stops at the first unmapped or non-RAM
  /// byte and returns what it read. Call on the vCPU thread (`onVCPUThread`).
  func debugRead(_ gva: UInt64, count: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    var a = gva
    while out.count < count {
      guard let gpa = try debugTranslate(a) else { break }
      let n = min(count - out.count, 4096 - Int(a & 0xFFF))
      guard memory.isRAM(GuestPhysicalAddress(gpa), length: UInt64(n)) else { break }
      out += try memory.readBytes(GuestPhysicalAddress(gpa), count: n)
      a &+= UInt64(n)
    }
    return out
  }

  /// Writes guest-virtual memory; false (and nothing written) unless every byte maps to RAM.
  /// Stale decoded or translated code is harmless: both caches re-check instruction bytes.
  func debugWrite(_ gva: UInt64, _ bytes: [UInt8]) throws -> Bool {
    var pieces: [(UInt64, ArraySlice<UInt8>)] = []
    var i = 0
    while i < bytes.count {
      let a = gva &+ UInt64(i)
      let n = min(bytes.count - i, 4096 - Int(a & 0xFFF))
      guard let gpa = try debugTranslate(a),
        memory.isRAM(GuestPhysicalAddress(gpa), length: UInt64(n))
      else { return false }
      pieces.append((gpa, bytes[i..<i + n]))
      i += n
    }
    for (gpa, b) in pieces { try memory.write(GuestPhysicalAddress(gpa), bytes: Array(b)) }
    return true
  }

  /// GVA -> GPA through the boot vCPU's current CR3 (nil: not mapped).
  private func debugTranslate(_ gva: UInt64) throws -> UInt64? {
    let s = try cpu.getState().special
    if s.cr0 & CR0.pg == 0 { return gva & 0xFFFF_FFFF }
    let has1G = cpu.softwareMMU.map { $0.cpuidLeaf(0x8000_0001).edx & (1 << 26) != 0 } ?? true
    let walker = GuestPageWalker(memory: memory, has1G: has1G)
    let regs = PagingRegisters(cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer)
    switch walker.walk(gva, regs: regs, write: false, user: false, fetch: false, update: false) {
    case .ok(let leaf): return leaf.gpa | (gva & 0xFFF)
    case .fault, .machineCheck: return nil
    }
  }
}
