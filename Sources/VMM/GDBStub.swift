import Engine

/// What the gdb stub drives. `MachineGDBTarget` implements it over a `Machine`;
/// unit tests implement it with a fake.
protocol GDBTarget: AnyObject {
  /// Stops the guest; false when the VM has ended.
  func stop() -> Bool
  /// A debug stop the engine made since the last resume, if any (taken once).
  func takeStop() -> DebugStop?
  /// The VM's exit status once it has ended.
  var exitStatus: Int32? { get }
  func registers() throws -> GDBRegisterFile
  func setRegisters(_ r: GDBRegisterFile) throws
  func readMemory(_ address: UInt64, count: Int) throws -> [UInt8]
  /// False when some byte is not mapped (nothing is written then).
  func writeMemory(_ address: UInt64, _ bytes: [UInt8]) throws -> Bool
  /// Applies the debug stops and lets the guest run.
  func resume(_ settings: DebugSettings) throws
  /// Ends the VM (gdb `kill`).
  func kill()
}

/// The GDB remote serial protocol for one client: framing, acknowledgements and
/// commands, as a state machine over a `GDBTarget`. It owns no socket: bytes come in
/// through `receive`, and replies go out through `send`. One vCPU, shown as thread 1.
final class GDBStub {
  private let target: GDBTarget
  private let send: ([UInt8]) -> Void
  private var decoder = GDBPacketDecoder()
  private var noAck = false
  /// The guest runs and gdb waits for a stop reply.
  private(set) var running = false
  /// Set by `D` or `k`: the transport closes the connection.
  private(set) var finished = false
  private var softwareBreakpoints: Set<UInt64> = []
  private var hardwareBreakpoints: Set<UInt64> = []
  private var watchpoints: [Watchpoint] = []
  /// Why the target last stopped, for `?`.
  private var lastStop = "S05"

  init(target: GDBTarget, send: @escaping ([UInt8]) -> Void) {
    self.target = target
    self.send = send
  }

  /// A client connected: gdb expects a stopped target.
  func attach() {
    if target.stop() {
      lastStop = stopReply(target.takeStop()) ?? "T05thread:01;"
    } else {
      lastStop = exitReply()
    }
  }

  func receive(_ bytes: [UInt8]) {
    for b in bytes {
      guard !finished, let event = decoder.feed(b) else { continue }
      switch event {
      case .packet(let p):
        if !noAck { send([UInt8(ascii: "+")]) }
        handle(p)
      case .badPacket:
        if !noAck { send([UInt8(ascii: "-")]) }
      case .interrupt:
        if running { interrupt() }
      case .ack, .nak:
        break  // replies are not retransmitted: gdb over a stream socket does not lose them
      }
    }
  }

  /// The transport's wake-up (the engine stopped, or the VM ended): sends the stop reply.
  func poll() {
    guard running else { return }
    if let s = target.takeStop() {
      // Park first: the reply must not race the guest.
      if target.stop() {
        report(stopReply(s) ?? "T05thread:01;")
      } else {
        report(exitReply())
      }
    } else if target.exitStatus != nil {
      report(exitReply())
    }
  }

  /// The client went away: the VM keeps running without debug stops.
  func disconnected() {
    guard !finished else { return }
    finished = true
    try? target.resume(DebugSettings())
  }

  private func interrupt() {
    if target.stop() {
      report(stopReply(target.takeStop()) ?? "T02thread:01;")
    } else {
      report(exitReply())
    }
  }

  private func report(_ reply: String) {
    running = false
    lastStop = reply
    reply_(reply)
    if reply.hasPrefix("W") || reply.hasPrefix("X") { finished = true }
  }

  private func exitReply() -> String {
    "W"
      + GDBHex.byte(UInt8(truncatingIfNeeded: target.exitStatus ?? 0)).map {
        String(UnicodeScalar($0))
      }.joined()
  }

  private func stopReply(_ s: DebugStop?) -> String? {
    guard let s else { return nil }
    switch s {
    case .step: return "T05thread:01;"
    case .breakpoint(let rip):
      return softwareBreakpoints.contains(rip) ? "T05swbreak:;thread:01;" : "T05hwbreak:;thread:01;"
    case .watchpoint(let w, let address):
      let kind = w.kind == .write ? "watch" : w.kind == .read ? "rwatch" : "awatch"
      return "T05\(kind):\(String(address, radix: 16));thread:01;"
    }
  }

  private func reply_(_ s: String) { send(GDBPacketDecoder.frame(Array(s.utf8))) }

  // MARK: Commands

  private func handle(_ p: [UInt8]) {
    guard let first = p.first else { return reply_("") }
    let s = String(decoding: p, as: UTF8.self)
    if running {
      // All-stop: nothing but Ctrl-C is meaningful while the guest runs.
      return
    }
    let rest = p.dropFirst()
    switch first {
    case UInt8(ascii: "?"): reply_(lastStop)
    case UInt8(ascii: "g"): reply_(readAllRegisters())
    case UInt8(ascii: "G"): reply_(writeAllRegisters(rest))
    case UInt8(ascii: "p"): reply_(readRegister(rest))
    case UInt8(ascii: "P"): reply_(writeRegister(rest))
    case UInt8(ascii: "m"): reply_(readMemory(rest))
    case UInt8(ascii: "M"): reply_(writeMemory(rest, binary: false))
    case UInt8(ascii: "X"): reply_(writeMemory(rest, binary: true))
    case UInt8(ascii: "Z"), UInt8(ascii: "z"):
      reply_(breakpoint(rest, insert: first == UInt8(ascii: "Z")))
    case UInt8(ascii: "c"): resume(step: false, at: rest)
    case UInt8(ascii: "s"): resume(step: true, at: rest)
    case UInt8(ascii: "H"), UInt8(ascii: "T"): reply_("OK")  // one thread
    case UInt8(ascii: "D"):
      reply_("OK")
      finished = true
      try? target.resume(DebugSettings())
    case UInt8(ascii: "k"):
      finished = true
      target.kill()
    case UInt8(ascii: "v"): vPacket(s)
    case UInt8(ascii: "q"), UInt8(ascii: "Q"): query(s)
    default: reply_("")  // unsupported: the empty reply
    }
  }

  private func query(_ s: String) {
    if s.hasPrefix("qSupported") {
      reply_(
        "PacketSize=\(String(GDBPacketDecoder.maxPacket, radix: 16));qXfer:features:read+;"
          + "swbreak+;hwbreak+;vContSupported+;QStartNoAckMode+")
    } else if s.hasPrefix("qXfer:features:read:target.xml:") {
      reply_(xfer(s.dropFirst("qXfer:features:read:target.xml:".count)))
    } else if s.hasPrefix("qXfer:features:read:") {
      reply_("E00")
    } else if s == "qAttached" {
      reply_("1")  // detach on quit: the VM keeps running
    } else if s == "qC" {
      reply_("QC01")
    } else if s == "qfThreadInfo" {
      reply_("m01")
    } else if s == "qsThreadInfo" {
      reply_("l")
    } else if s == "qSymbol::" {
      reply_("OK")
    } else if s == "QStartNoAckMode" {
      reply_("OK")
      noAck = true
    } else {
      reply_("")
    }
  }

  private func xfer(_ args: Substring) -> String {
    let parts = args.split(separator: ",")
    guard parts.count == 2, let off = Int(parts[0], radix: 16), let len = Int(parts[1], radix: 16),
      off >= 0, len >= 0
    else { return "E00" }
    let xml = Array(GDBRegisters.targetXML.utf8)
    guard off <= xml.count else { return "E00" }
    let end = min(xml.count, off + min(len, GDBPacketDecoder.maxPacket / 2))
    return (end == xml.count ? "l" : "m") + String(decoding: xml[off..<end], as: UTF8.self)
  }

  private func vPacket(_ s: String) {
    if s == "vCont?" {
      reply_("vCont;c;C;s;S;t")
    } else if s.hasPrefix("vCont;") {
      // One thread: the first action decides (s/S step, c/C continue, t stop).
      let action = s.dropFirst("vCont;".count).prefix(1)
      switch action {
      case "s", "S": resume(step: true, at: [])
      case "c", "C": resume(step: false, at: [])
      case "t":
        lastStop = "T00thread:01;"
        reply_(lastStop)
      default: reply_("E01")
      }
    } else if s.hasPrefix("vKill") {
      reply_("OK")
      finished = true
      target.kill()
    } else {
      reply_("")  // includes vMustReplyEmpty
    }
  }

  private func resume(step: Bool, at address: ArraySlice<UInt8>) {
    do {
      if !address.isEmpty {
        guard let a = GDBHex.number(address) else { return reply_("E01") }
        var r = try target.registers()
        r.state.general.rip = a
        try target.setRegisters(r)
      }
      _ = target.takeStop()  // a stale stop must not end this run
      let settings = DebugSettings(
        breakpoints: softwareBreakpoints.union(hardwareBreakpoints), watchpoints: watchpoints,
        singleStep: step)
      running = true
      try target.resume(settings)
    } catch {
      running = false
      reply_("E01")
    }
  }

  private func breakpoint(_ args: ArraySlice<UInt8>, insert: Bool) -> String {
    // type,addr,kind (conditions after ';' are not supported: gdb then evaluates them).
    let fields = args.split(separator: UInt8(ascii: ";"), maxSplits: 1).first ?? []
    let parts = fields.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].count == 1, let addr = GDBHex.number(parts[1]),
      let kind = GDBHex.number(parts[2])
    else { return "E01" }
    switch parts[0].first! {
    case UInt8(ascii: "0"):
      if insert { softwareBreakpoints.insert(addr) } else { softwareBreakpoints.remove(addr) }
    case UInt8(ascii: "1"):
      if insert { hardwareBreakpoints.insert(addr) } else { hardwareBreakpoints.remove(addr) }
    case UInt8(ascii: "2"), UInt8(ascii: "3"), UInt8(ascii: "4"):
      guard kind >= 1, kind <= 4096 else { return "E01" }
      let k: Watchpoint.Kind =
        parts[0].first! == UInt8(ascii: "2")
        ? .write : parts[0].first! == UInt8(ascii: "3") ? .read : .access
      let w = Watchpoint(address: addr, length: kind, kind: k)
      if insert {
        guard watchpoints.count < 64 else { return "E01" }
        if !watchpoints.contains(w) { watchpoints.append(w) }
      } else {
        watchpoints.removeAll { $0 == w }
      }
    default: return ""
    }
    if insert && softwareBreakpoints.count + hardwareBreakpoints.count > 4096 {
      softwareBreakpoints.remove(addr)
      hardwareBreakpoints.remove(addr)
      return "E01"
    }
    return "OK"
  }

  // MARK: Registers and memory

  private func readAllRegisters() -> String {
    guard let file = try? target.registers() else { return "E01" }
    var out = ""
    for r in GDBRegisters.all {
      if let v = GDBRegisters.value(r, file) {
        out += GDBHex.encode(v)
      } else {
        out += String(repeating: "x", count: r.bytes * 2)
      }
    }
    return out
  }

  private func writeAllRegisters(_ hex: ArraySlice<UInt8>) -> String {
    guard var file = try? target.registers() else { return "E01" }
    var i = hex.startIndex
    for r in GDBRegisters.all {
      let n = r.bytes * 2
      guard hex.endIndex - i >= n else { break }  // gdb may send a prefix
      let field = hex[i..<i + n]
      i += n
      if field.first == UInt8(ascii: "x") { continue }
      guard let bytes = GDBHex.decode(field), GDBRegisters.set(r, bytes, in: &file) else {
        return "E01"
      }
    }
    return (try? target.setRegisters(file)) != nil ? "OK" : "E01"
  }

  private func readRegister(_ arg: ArraySlice<UInt8>) -> String {
    guard let n = GDBHex.number(arg), n < GDBRegisters.all.count,
      let file = try? target.registers()
    else { return "E01" }
    let r = GDBRegisters.all[Int(n)]
    return GDBRegisters.value(r, file).map { GDBHex.encode($0) }
      ?? String(repeating: "x", count: r.bytes * 2)
  }

  private func writeRegister(_ arg: ArraySlice<UInt8>) -> String {
    let parts = arg.split(separator: UInt8(ascii: "="), maxSplits: 1)
    guard parts.count == 2, let n = GDBHex.number(parts[0]), n < GDBRegisters.all.count,
      let bytes = GDBHex.decode(parts[1]), var file = try? target.registers(),
      GDBRegisters.set(GDBRegisters.all[Int(n)], bytes, in: &file)
    else { return "E01" }
    return (try? target.setRegisters(file)) != nil ? "OK" : "E01"
  }

  /// `addr,length`; at most half a packet, so the hex reply fits.
  private func addressAndLength(_ s: ArraySlice<UInt8>) -> (UInt64, Int)? {
    let parts = s.split(separator: UInt8(ascii: ","))
    guard parts.count == 2, let a = GDBHex.number(parts[0]), let n = GDBHex.number(parts[1]),
      n <= UInt64(GDBPacketDecoder.maxPacket / 2)
    else { return nil }
    return (a, Int(n))
  }

  private func readMemory(_ args: ArraySlice<UInt8>) -> String {
    guard let (a, n) = addressAndLength(args) else { return "E01" }
    guard let bytes = try? target.readMemory(a, count: n), !bytes.isEmpty || n == 0 else {
      return "E14"
    }
    return GDBHex.encode(bytes)
  }

  private func writeMemory(_ args: ArraySlice<UInt8>, binary: Bool) -> String {
    guard let colon = args.firstIndex(of: UInt8(ascii: ":")),
      let (a, n) = addressAndLength(args[..<colon])
    else { return "E01" }
    let payload = args[(colon + 1)...]
    // X data arrives unescaped by the decoder already; M data is hex.
    guard let bytes = binary ? Array(payload) : GDBHex.decode(payload), bytes.count == n else {
      return "E01"
    }
    guard n > 0 else { return "OK" }
    return (try? target.writeMemory(a, bytes)) == true ? "OK" : "E14"
  }
}
