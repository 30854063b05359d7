import Dispatch
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// The host side of the guest console, as QEMU's `-nographic` behaves: stdin
/// fully raw when it is a terminal (ISIG off, so Ctrl-C, Ctrl-Z and Ctrl-\ go
/// to the guest), an escape key for the VMM, and a reader thread that hands
/// input on (and may be blocked by back-pressure). SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT stop the VM; SIGTSTP restores the terminal and stops the process,
/// SIGCONT re-enters raw mode. `restore()` puts the terminal back; it also
/// runs at process exit.
final class HostTerminal {
  /// Signals that stop the VM cleanly; the exit status is 128 + the signal.
  static let stopSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

  private let lock = NSLock()
  private var saved: termios?
  private var signalSources: [DispatchSourceSignal] = []

  var isTerminal: Bool { isatty(0) == 1 }

  /// - onInput: bytes for the guest, called on the reader thread; it may block
  ///   until the guest has room (nothing typed is dropped).
  /// - onCommand: an escape-key command.
  /// - onEnd: stdin reached EOF or failed.
  /// - onSignal: one of `stopSignals` arrived.
  func start(
    escape: ConsoleEscape,
    onInput: @escaping ([UInt8]) -> Void, onCommand: @escaping (ConsoleEscape.Command) -> Void,
    onEnd: @escaping () -> Void, onSignal: @escaping (Int32) -> Void
  ) {
    for sig in HostTerminal.stopSignals {
      watch(sig) { onSignal(sig) }
    }
    watch(SIGTSTP) { [self] in
      // Leave the terminal as the shell expects it, then stop for real.
      restore(forget: false)
      kill(getpid(), SIGSTOP)
    }
    watch(SIGCONT) { [self] in enterRawMode() }
    if isTerminal {
      var t = termios()
      if tcgetattr(0, &t) == 0 {
        lock.lock()
        saved = t
        lock.unlock()
        HostTerminal.savedForExit = t
        atexit { HostTerminal.restoreAtExit() }
        enterRawMode()
      }
    }
    let thread = Thread {
      var escape = escape
      var buf = [UInt8](repeating: 0, count: 256)
      while true {
        let n = read(0, &buf, buf.count)
        if n > 0 {
          let (bytes, commands) = escape.process(buf[0..<n])
          if !bytes.isEmpty { onInput(bytes) }
          for c in commands { onCommand(c) }
        } else if n < 0 && errno == EINTR {
          continue
        } else {
          onEnd()  // EOF or error: no more input.
          return
        }
      }
    }
    thread.start()
  }

  private func watch(_ sig: Int32, _ handler: @escaping () -> Void) {
    signal(sig, SIG_IGN)
    let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    s.setEventHandler(handler: handler)
    s.resume()
    signalSources.append(s)
  }

  /// Fully raw input; output processing stays on so the guest's "\n" starts a
  /// new line. Only in the foreground: a background process changing the
  /// terminal would be stopped by SIGTTOU, and the shell owns it then.
  private func enterRawMode() {
    lock.lock()
    defer { lock.unlock() }
    guard var raw = saved, tcgetpgrp(0) == getpgrp() else { return }
    cfmakeraw(&raw)
    raw.c_oflag |= tcflag_t(OPOST | ONLCR)
    tcsetattr(0, TCSANOW, &raw)
  }

  func restore() { restore(forget: true) }

  /// `forget: false` keeps the saved state so SIGCONT can re-enter raw mode.
  private func restore(forget: Bool) {
    lock.lock()
    defer { lock.unlock() }
    if var t = saved {
      tcsetattr(0, TCSANOW, &t)
      if forget { saved = nil }
    }
  }

  /// The terminal's size in characters, if stdin or stdout is a terminal.
  static func size() -> (rows: Int, cols: Int)? {
    var w = winsize()
    for fd: Int32 in [0, 1] where ioctl(fd, UInt(TIOCGWINSZ), &w) == 0 && w.ws_row > 0 {
      return (Int(w.ws_row), Int(w.ws_col))
    }
    return nil
  }

  nonisolated(unsafe) private static var savedForExit: termios?
  private static func restoreAtExit() {
    if var t = savedForExit { tcsetattr(0, TCSANOW, &t) }
  }
}
