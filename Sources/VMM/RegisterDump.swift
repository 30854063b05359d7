import Engine
import X86

extension Machine {
  /// The vCPU's registers as the user needs them when the VM stopped badly:
  /// where it was (RIP, RSP), its mode (CR0, CR3, CR4, EFER) and the last
  /// exception it took. Through `VirtualCPU` only, so every engine reports it.
  public func registerDump() -> String? {
    guard let s = try? cpu.getState() else { return nil }
    return RegisterDump.format(s, lastException: cpu.lastException)
  }
}

enum RegisterDump {
  static func format(_ s: CPUState, lastException: ExceptionRecord?) -> String {
    func h(_ v: UInt64) -> String {
      let d = String(v, radix: 16)
      return String(repeating: "0", count: max(0, 16 - d.count)) + d
    }
    let g = s.general
    let sp = s.special
    var out = "vCPU 0 registers:\n"
    out += "  RIP=\(h(g.rip)) RSP=\(h(g.rsp)) RFLAGS=\(h(g.rflags))\n"
    out += "  RAX=\(h(g.rax)) RBX=\(h(g.rbx)) RCX=\(h(g.rcx)) RDX=\(h(g.rdx))\n"
    out += "  RSI=\(h(g.rsi)) RDI=\(h(g.rdi)) RBP=\(h(g.rbp))\n"
    out += "  CS=\(String(sp.cs.selector, radix: 16)) SS=\(String(sp.ss.selector, radix: 16))"
    out +=
      " CR0=\(h(sp.cr0)) CR2=\(h(sp.cr2)) CR3=\(h(sp.cr3)) CR4=\(h(sp.cr4)) EFER=\(h(sp.efer))\n"
    out += "  last exception: " + (lastException.map { "\($0)" } ?? "none reported") + "\n"
    return out
  }
}
