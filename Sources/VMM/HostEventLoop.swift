import CHostIO
import Foundation

public enum HostIOError: Error, Equatable, CustomStringConvertible {
  case syscall(String, errno: Int32)

  public var description: String {
    switch self {
    case .syscall(let call, let e): return "\(call) failed: \(String(cString: strerror(e)))"
    }
  }
}

/// An eventfd one thread sleeps on and others ring: the halted vCPU's
/// doorbell. Rings before the wait are not lost (the counter stays set).
public final class Doorbell: @unchecked Sendable {
  let fd: Int32

  public init() throws {
    fd = chostio_eventfd_create()
    guard fd >= 0 else { throw HostIOError.syscall("eventfd", errno: errno) }
  }

  deinit { close(fd) }

  public func ring() { _ = chostio_eventfd_signal(fd) }

  /// Sleeps until rung or until `timeoutNanoseconds` pass (nil: until rung),
  /// and clears the doorbell. Returns true when it was rung.
  @discardableResult
  public func wait(timeoutNanoseconds: UInt64?) -> Bool {
    let t = timeoutNanoseconds.map { Int64(min($0, UInt64(Int64.max))) } ?? -1
    guard chostio_wait_readable(fd, t) > 0 else { return false }
    _ = chostio_drain(fd)
    return true
  }
}

/// The host I/O event loop: one thread asleep in epoll_wait over a timerfd
/// (the earliest device deadline), an eventfd that stops it, and the file
/// descriptors back-ends register (disk, network). It replaces a polling
/// timer thread, so an idle guest costs the host no wake-ups at all.
/// Handlers run on the loop thread: they must only touch thread-safe state
/// (kick the vCPU, ring a doorbell, queue work for the vCPU thread).
public final class HostEventLoop: @unchecked Sendable {
  private let epfd: Int32
  private let timerfd: Int32
  private let stopfd: Int32
  private let lock = NSLock()
  private var handlers: [Int32: () -> Void] = [:]
  private var timerHandler: (() -> Void)?
  /// Absolute CLOCK_MONOTONIC ns the timerfd is armed for; 0 = disarmed.
  private var armedAt: UInt64 = 0
  /// The deadline asked for last (0: none). The timerfd may be armed earlier than it:
  /// a deadline that moves later (the UART's, once per byte) costs no syscall, and an
  /// early expiry re-arms for it on the loop thread instead of calling the handler.
  private var wantedAt: UInt64 = 0
  private var programCount: UInt64 = 0
  /// timerfd_settime calls, for tests and `--stats`.
  public var timerPrograms: UInt64 {
    lock.lock()
    defer { lock.unlock() }
    return programCount
  }
  private var started = false
  private let exited = DispatchSemaphore(value: 0)
  private var wakeupCount: UInt64 = 0
  /// Wake-ups of the loop thread, for tests and `--stats`.
  public var wakeups: UInt64 {
    lock.lock()
    defer { lock.unlock() }
    return wakeupCount
  }

  private static let timerToken: UInt64 = 0
  private static let stopToken: UInt64 = 1

  public init() throws {
    epfd = chostio_epoll_create()
    guard epfd >= 0 else { throw HostIOError.syscall("epoll_create1", errno: errno) }
    timerfd = chostio_timerfd_create()
    stopfd = chostio_eventfd_create()
    guard timerfd >= 0, stopfd >= 0,
      chostio_epoll_add(epfd, timerfd, HostEventLoop.timerToken) == 0,
      chostio_epoll_add(epfd, stopfd, HostEventLoop.stopToken) == 0
    else {
      let e = errno
      for fd in [epfd, timerfd, stopfd] where fd >= 0 { close(fd) }
      throw HostIOError.syscall("timerfd/eventfd setup", errno: e)
    }
  }

  deinit {
    close(epfd)
    close(timerfd)
    close(stopfd)
  }

  /// Calls `handler` on the loop thread whenever `fd` is readable.
  public func add(fd: Int32, handler: @escaping () -> Void) throws {
    lock.lock()
    defer { lock.unlock() }
    guard handlers[fd] == nil else { throw HostIOError.syscall("epoll_ctl ADD", errno: EEXIST) }
    guard chostio_epoll_add(epfd, fd, UInt64(UInt32(bitPattern: fd)) + 2) == 0 else {
      throw HostIOError.syscall("epoll_ctl ADD", errno: errno)
    }
    handlers[fd] = handler
  }

  public func remove(fd: Int32) {
    lock.lock()
    defer { lock.unlock() }
    guard handlers.removeValue(forKey: fd) != nil else { return }
    _ = chostio_epoll_remove(epfd, fd)
  }

  /// What runs when the deadline timer fires.
  public func setTimerHandler(_ handler: @escaping () -> Void) {
    lock.lock()
    timerHandler = handler
    lock.unlock()
  }

  /// Arms the deadline timer for absolute CLOCK_MONOTONIC `ns` (0 disarms).
  /// Any thread may call it; the kernel is asked only when the deadline comes
  /// earlier than the armed one. A later or no deadline just waits for the
  /// armed expiry, which then re-arms (or does nothing) without a handler call.
  public func armTimer(atMonotonicNanoseconds ns: UInt64) {
    lock.lock()
    defer { lock.unlock() }
    wantedAt = ns
    guard ns != 0, armedAt == 0 || ns < armedAt else { return }
    program(ns)
  }

  /// Sets the timerfd; the caller holds `lock`.
  private func program(_ ns: UInt64) {
    armedAt = ns
    programCount &+= 1
    _ = chostio_timerfd_arm(timerfd, ns)
  }

  public func start(name: String = "swiftvmm-io") {
    lock.lock()
    defer { lock.unlock() }
    guard !started else { return }
    started = true
    let t = Thread { [self] in
      loop()
      exited.signal()
    }
    t.name = name
    t.start()
  }

  /// Stops the loop thread and waits for it. Not from a handler.
  public func stop() {
    lock.lock()
    let wasStarted = started
    started = false
    lock.unlock()
    guard wasStarted else { return }
    _ = chostio_eventfd_signal(stopfd)
    exited.wait()
    _ = chostio_drain(stopfd)
  }

  static func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
  }

  private func loop() {
    var tokens = [UInt64](repeating: 0, count: 16)
    while true {
      let n = chostio_epoll_wait(epfd, &tokens, Int32(tokens.count), -1)
      guard n >= 0 else { return }  // EBADF and the like: nothing more will come
      for token in tokens.prefix(Int(n)) {
        lock.lock()
        wakeupCount += 1
        lock.unlock()
        switch token {
        case HostEventLoop.stopToken:
          return
        case HostEventLoop.timerToken:
          // 0: re-armed since it fired (settime clears the count); nothing is due.
          guard chostio_drain(timerfd) > 0 else { continue }
          lock.lock()
          armedAt = 0
          let wanted = wantedAt
          if wanted == 0 || wanted > HostEventLoop.monotonicNow() {
            // Expired early: the deadline moved later or went away since it was armed.
            if wanted != 0 { program(wanted) }
            lock.unlock()
            continue
          }
          let h = timerHandler
          lock.unlock()
          h?()
        default:
          let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: token - 2))
          lock.lock()
          let h = handlers[fd]
          lock.unlock()
          h?()
        }
      }
    }
  }
}
