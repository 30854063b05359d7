import Engine
import Foundation

/// The host timer of an emulated platform: a thread that kicks the vCPU out
/// of `run()` when the earliest device deadline passes, as a host timer
/// interrupt forces a VM exit. The run loop then polls the devices.
final class TimerKicker: @unchecked Sendable {
  private let platform: PCPlatform
  private let cpu: VirtualCPU
  private let lock = NSLock()
  private var running = true
  private var thread: Thread?

  /// Granularity of timer delivery while guest code runs.
  static let periodMicroseconds: UInt32 = 1000

  init(platform: PCPlatform, cpu: VirtualCPU) {
    self.platform = platform
    self.cpu = cpu
    let t = Thread { [self] in loop() }
    t.name = "swiftvmm-timer"
    thread = t
    t.start()
  }

  private func loop() {
    while isRunning {
      usleep(TimerKicker.periodMicroseconds)
      let deadline = platform.nextDeadline.load()
      if deadline != .max && platform.clock.nanoseconds >= deadline { cpu.kick() }
    }
  }

  private var isRunning: Bool {
    lock.lock()
    defer { lock.unlock() }
    return running
  }

  func stop() {
    lock.lock()
    running = false
    lock.unlock()
  }
}
