import CNetwork
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Where the guest's Ethernet frames go: a host back-end, fed by virtio-net's
/// transmit queue and feeding its receive queue. Back-ends receive on their own
/// thread; frames wait in a bounded inbox until the vCPU thread takes them
/// (`takeReceived`), and `onReceive` tells the VMM there is something to take.
public protocol NetworkBackend: AnyObject {
  func send(_ frame: [UInt8])
  func takeReceived() -> [[UInt8]]
  var onReceive: (() -> Void)? { get set }
  /// Frames the back-end dropped (inbox full, host queue full, host errors).
  var drops: UInt64 { get }
}

/// Received frames on their way from a back-end thread to the vCPU thread.
final class FrameInbox: @unchecked Sendable {
  static let capacity = 512
  private let lock = NSLock()
  private var frames: [[UInt8]] = []
  private(set) var drops: UInt64 = 0
  /// Called (on the back-end's thread) after a frame is put.
  var onReceive: (() -> Void)?

  /// Returns false (and counts a drop) when full.
  func put(_ frame: [UInt8]) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard frames.count < Self.capacity else {
      drops += 1
      return false
    }
    frames.append(frame)
    return true
  }

  /// Puts a frame and tells the receiver.
  func deliver(_ frame: [UInt8]) {
    if put(frame) { onReceive?() }
  }

  func take() -> [[UInt8]] {
    lock.lock()
    defer { lock.unlock() }
    let out = frames
    frames = []
    return out
  }
}

public struct NetworkBackendError: Error, CustomStringConvertible {
  public var description: String
}

/// `--net user`: libslirp, as QEMU's `-nic user`. The guest gets 10.0.2.15 by DHCP,
/// 10.0.2.2 is the host, 10.0.2.3 forwards DNS; `hostfwd` opens host ports.
public final class UserNetworkBackend: NetworkBackend {
  private var handle: OpaquePointer?
  private let inbox = FrameInbox()
  private var sendDrops: UInt64 = 0
  public var onReceive: (() -> Void)? {
    get { inbox.onReceive }
    set { inbox.onReceive = newValue }
  }

  public init(forwards: [NetworkSpec.PortForward]) throws {
    var error = [CChar](repeating: 0, count: 256)
    let opaque = Unmanaged.passUnretained(self).toOpaque()
    guard let h = cusernet_new(UserNetworkBackend.received, opaque, &error, error.count) else {
      throw NetworkBackendError(
        description: "--net user: \(String(cString: error))")
    }
    handle = h
    for f in forwards {
      guard
        cusernet_add_hostfwd(h, f.udp ? 1 : 0, f.hostAddress, Int32(f.hostPort), Int32(f.guestPort))
          == 0
      else {
        cusernet_free(h)
        handle = nil
        throw NetworkBackendError(
          description:
            "--net user: cannot forward \(f.udp ? "udp" : "tcp") \(f.hostAddress):\(f.hostPort) (in use or not permitted)"
        )
      }
    }
  }

  deinit { if let handle { cusernet_free(handle) } }

  public static var libraryVersion: String { String(cString: cusernet_version()) }

  private static let received: cusernet_rx_fn = { opaque, frame, length in
    guard let opaque, let frame else { return }
    let me = Unmanaged<UserNetworkBackend>.fromOpaque(opaque).takeUnretainedValue()
    me.inbox.deliver(Array(UnsafeBufferPointer(start: frame, count: length)))
  }

  public func send(_ frame: [UInt8]) {
    guard let handle else { return }
    if frame.withUnsafeBufferPointer({ cusernet_send(handle, $0.baseAddress, $0.count) }) != 0 {
      sendDrops += 1
    }
  }

  public func takeReceived() -> [[UInt8]] { inbox.take() }
  public var drops: UInt64 { inbox.drops + sendDrops }
}

/// `--net tap=NAME`: frames go to and come from a host TAP interface (IFF_NO_PI, no
/// offloads), read on a thread of its own that closes the descriptors when stopped.
public final class TapNetworkBackend: NetworkBackend {
  private let fd: Int32
  /// The write end of a pipe whose read end wakes the reader thread to stop.
  private let stopFD: Int32
  private let inbox = FrameInbox()
  private var writeDrops: UInt64 = 0
  public var onReceive: (() -> Void)? {
    get { inbox.onReceive }
    set { inbox.onReceive = newValue }
  }

  public init(name: String) throws {
    var error = [CChar](repeating: 0, count: 256)
    let fd = cnetwork_tap_open(name, &error, error.count)
    guard fd >= 0 else {
      throw NetworkBackendError(description: "--net tap=\(name): \(String(cString: error))")
    }
    var pipeFDs: [Int32] = [-1, -1]
    guard pipe(&pipeFDs) == 0 else {
      close(fd)
      throw NetworkBackendError(
        description: "--net tap=\(name): pipe: \(String(cString: strerror(errno)))")
    }
    self.fd = fd
    stopFD = pipeFDs[1]
    let (tapFD, wakeFD, inbox) = (fd, pipeFDs[0], inbox)
    let t = Thread { TapNetworkBackend.readLoop(fd: tapFD, stopFD: wakeFD, inbox: inbox) }
    t.name = "swiftvmm-tap"
    t.start()
  }

  deinit { close(stopFD) }  // the reader sees end-of-file on the pipe and stops

  private static func readLoop(fd: Int32, stopFD: Int32, inbox: FrameInbox) {
    defer {
      close(fd)
      close(stopFD)
    }
    var buffer = [UInt8](repeating: 0, count: 65536)
    var fds = [
      pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
      pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
    ]
    while true {
      let r = poll(&fds, 2, -1)
      if r < 0 && errno == EINTR { continue }
      if r < 0 || fds[1].revents != 0 { return }
      while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        inbox.deliver(Array(buffer[0..<n]))
      }
    }
  }

  public func send(_ frame: [UInt8]) {
    let n = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n != frame.count { writeDrops += 1 }
  }

  public func takeReceived() -> [[UInt8]] { inbox.take() }
  public var drops: UInt64 { inbox.drops + writeDrops }
}
