import Dispatch
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The host side of the guest console: stdin in raw mode (when it is a
/// terminal), a reader thread, and SIGINT/SIGTERM turned into a clean stop.
/// `restore()` puts the terminal back; it also runs at process exit.
final class HostTerminal {
  private var saved: termios?
  private var signalSources: [DispatchSourceSignal] = []

  func start(
    onInput: @escaping ([UInt8]) -> Void, onEnd: @escaping () -> Void,
    onSignal: @escaping () -> Void
  ) {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
      signal(sig, SIG_IGN)
      let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
      s.setEventHandler(handler: onSignal)
      s.resume()
      signalSources.append(s)
    }
    if isatty(0) == 1 {
      var t = termios()
      if tcgetattr(0, &t) == 0 {
        saved = t
        HostTerminal.savedForExit = t
        atexit { HostTerminal.restoreAtExit() }
        var raw = t
        cfmakeraw(&raw)
        // Keep ISIG so Ctrl-C still stops the VM cleanly; keep output processing
        // so the guest's "\n" starts a new line on the host terminal.
        raw.c_lflag |= tcflag_t(ISIG)
        raw.c_oflag |= tcflag_t(OPOST | ONLCR)
        tcsetattr(0, TCSANOW, &raw)
      }
    }
    let thread = Thread {
      var buf = [UInt8](repeating: 0, count: 256)
      while true {
        let n = read(0, &buf, buf.count)
        if n > 0 {
          onInput(Array(buf[0..<n]))
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

  func restore() {
    if var t = saved {
      tcsetattr(0, TCSANOW, &t)
      saved = nil
    }
  }

  nonisolated(unsafe) private static var savedForExit: termios?
  private static func restoreAtExit() {
    if var t = savedForExit { tcsetattr(0, TCSANOW, &t) }
  }
}
