import Foundation

/// What other threads ask of the vCPU thread: park it (pause) and run closures on it
/// between exits. Snapshots, the gdb stub and the API server build on this, so the CPU
/// and device state they touch is only ever touched on the vCPU thread.
///
/// Lock order: this object's condition may be held while taking `Machine`'s lock
/// (through `stopRequested`), never the other way round.
final class VCPUThreadRequests {
  private let condition = NSCondition()
  private var pauseRequested = false
  private var parked = false
  private var running = false
  private var queue: [() -> Void] = []
  private var vcpuThread: pthread_t?

  /// Whether the calling thread is the one running the loop.
  var isOnVCPUThread: Bool {
    condition.lock()
    defer { condition.unlock() }
    guard let t = vcpuThread else { return false }
    return pthread_equal(t, pthread_self()) != 0
  }

  var isPaused: Bool {
    condition.lock()
    defer { condition.unlock() }
    return parked
  }

  /// vCPU thread: the run loop starts.
  func started() {
    condition.lock()
    running = true
    vcpuThread = pthread_self()
    condition.unlock()
  }

  /// vCPU thread: the run loop ended. Queued requests still run (on this thread,
  /// which owns the machine now), and waiters are released.
  func finished() {
    condition.lock()
    running = false
    vcpuThread = nil
    parked = false
    let rest = queue
    queue = []
    condition.broadcast()
    condition.unlock()
    for r in rest { r() }
  }

  /// Any thread: asks the vCPU to park and waits until it has (on the vCPU thread
  /// itself it cannot wait: the loop parks at its next check). Returns false if the
  /// loop is not running.
  /// `wake` kicks a running vCPU and rings a halted one's doorbell.
  func pause(wake: () -> Void) -> Bool {
    condition.lock()
    guard running else {
      condition.unlock()
      return false
    }
    pauseRequested = true
    if let t = vcpuThread, pthread_equal(t, pthread_self()) != 0 {
      // Asked from the loop itself (a request, a debug stop): it parks at its next check.
      condition.unlock()
      return true
    }
    condition.unlock()
    wake()
    condition.lock()
    defer { condition.unlock() }
    while running && !parked && pauseRequested { condition.wait() }
    return parked
  }

  /// Before the loop starts: it parks at its first check, before any instruction.
  func pauseAtStart() {
    condition.lock()
    pauseRequested = true
    condition.unlock()
  }

  func resume() {
    condition.lock()
    pauseRequested = false
    condition.broadcast()
    condition.unlock()
  }

  /// Any thread: runs `body` on the vCPU thread and waits for it. Before the loop
  /// starts or after it ends, the caller owns the machine and `body` runs here.
  func perform<T>(wake: () -> Void, _ body: @escaping () throws -> T) throws -> T {
    condition.lock()
    let onLoop = vcpuThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    if !running || onLoop {
      condition.unlock()
      return try body()
    }
    var result: Result<T, Error>?
    queue.append { [condition] in
      let r = Result { try body() }
      condition.lock()
      result = r
      condition.broadcast()
      condition.unlock()
    }
    condition.broadcast()  // a parked loop waits on this condition
    condition.unlock()
    wake()
    condition.lock()
    defer { condition.unlock() }
    while result == nil { condition.wait() }
    return try result!.get()
  }

  /// Whether `serve` has anything to do (cheap check for the run loop).
  var hasWork: Bool {
    condition.lock()
    defer { condition.unlock() }
    return pauseRequested || !queue.isEmpty
  }

  /// vCPU thread, at an exit boundary: runs queued requests and stays parked while a
  /// pause is requested, unless the host stops the VM.
  func serve(stopRequested: () -> Bool) {
    condition.lock()
    while true {
      if !queue.isEmpty {
        let q = queue
        queue = []
        condition.unlock()
        for r in q { r() }
        condition.lock()
        continue
      }
      if pauseRequested && !stopRequested() {
        if !parked {
          parked = true
          condition.broadcast()
        }
        condition.wait()
        continue
      }
      break
    }
    if parked {
      parked = false
      condition.broadcast()
    }
    condition.unlock()
  }

  /// Wakes a parked loop so it re-checks `stopRequested` (a host stop while paused).
  func wakeParked() {
    condition.lock()
    condition.broadcast()
    condition.unlock()
  }
}

extension Machine {
  /// Parks the vCPU thread at the next exit boundary (a running vCPU is kicked, a
  /// halted one woken). Returns true once parked; false if the run loop is not running.
  /// Guest time is not stopped while paused: with host time, timers that fell due
  /// fire on resume.
  @discardableResult
  public func pause() -> Bool {
    requests.pause(wake: { noteHostWork() })
  }

  /// Call before `run()`: the run loop parks before the first instruction (a snapshot
  /// loaded without `resume_vm`) until `resume()`.
  public func startPaused() {
    requests.pauseAtStart()
    noteHostWork()
  }

  /// Lets a paused vCPU run again.
  public func resume() {
    requests.resume()
  }

  public var isPaused: Bool { requests.isPaused }

  /// Runs `body` on the vCPU thread between exits (also while paused) and returns its
  /// result, so CPU and device state are read or changed only there. Before `run()`
  /// starts or after it returns, `body` runs on the caller's thread.
  public func onVCPUThread<T>(_ body: @escaping () throws -> T) throws -> T {
    try requests.perform(wake: { noteHostWork() }, body)
  }
}
