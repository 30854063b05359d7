import ArgumentParser
import BenchStats
import Boot
import Engine
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// Emulated vs para-virtual I/O on the same Debian kernel and busybox initramfs: the
/// translator (or interpreter) with our devices, QEMU TCG with its own, in one invocation.
struct BenchIO: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "io",
    abstract:
      "Console, virtio-blk and network I/O in the Debian guest on SwiftVMM and on QEMU TCG.",
    discussion: """
      One boot per VMM and repeat runs every phase; the guest prints a marker line on ttyS0 \
      before and after each, and the host reads the clock, this VMM's CPU time (QEMU's from \
      /proc) and, for SwiftVMM, the --stats counters at each marker. Figures are medians. \
      The 4 KiB random reads run one busybox dd per read; an equal loop of dd count=0 is timed \
      too and subtracted, so the figure is the reads, not the process start-ups. \
      The TAP rows (root only) boot each VMM once more on a TAP device the bench creates \
      (192.168.213.1/24 on the host) and removes.
      """)

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(
    name: .customLong("size-mib"),
    help: "MiB written and read sequentially on virtio-blk (and on the host).")
  var sizeMiB: Int = 64
  @Option(name: .customLong("console-kib"), help: "KiB written to each console.")
  var consoleKiB: Int = 64
  @Option(name: .customLong("net-mib"), help: "MiB sent each way over each network.")
  var netMiB: Int = 8
  @Option(help: "4 KiB random reads for the IOPS row.")
  var reads: Int = 200
  @Option(help: "Boots of each VMM; the median of each figure is printed.")
  var repeats: Int = 1
  @Option(help: "Comma-separated groups: console, blk, net (user-mode), tap (root only).")
  var only: String = "console,blk,net,tap"
  @Option(help: "Comma-separated VMMs to run: swiftvmm, qemu.")
  var vmms: String = "swiftvmm,qemu"
  @Option(help: "SwiftVMM's engine: translator (the default for linux) or interpreter.")
  var engine: String = "translator"
  @Option(help: "Write the figures as JSON to this file.")
  var json: String?
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    _ = try logging.bootstrap()
    guard (1...4096).contains(sizeMiB), (1...65536).contains(consoleKiB),
      (1...4096).contains(netMiB), (1...100_000).contains(reads), (1...100).contains(repeats)
    else {
      BenchIO.usageError(
        "--size-mib and --net-mib 1-4096, --console-kib 1-65536, --reads 1-100000, --repeats 1-100"
      )
    }
    var groups = Set<String>()
    for g in only.split(separator: ",").map(String.init) {
      guard ["console", "blk", "net", "tap"].contains(g) else {
        BenchIO.usageError("--only: unknown group '\(g)' (console, blk, net, tap)")
      }
      groups.insert(g)
    }
    guard let engineKind = EngineKind(rawValue: engine), engineKind != .kvm else {
      BenchIO.usageError("--engine \(engine): translator or interpreter")
    }
    let chosen = Set(vmms.split(separator: ",").map(String.init))
    guard !chosen.isEmpty, chosen.isSubset(of: ["swiftvmm", "qemu"]) else {
      BenchIO.usageError("--vmms \(vmms): a list of swiftvmm, qemu")
    }
    if let json { OutputFile.checkWritable(json, what: "--json") }
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    guard let guest = LinuxGuestImages.locate(in: dir) else {
      fail(
        "the Debian guest is not in \(dir); run `swiftvmm guest fetch-linux`",
        status: .unusableInput)
    }
    // TAP needs its own boot (one NIC per VM) and a device only root can create.
    var tap: BenchTap?
    if groups.contains("tap") {
      let (t, why) = BenchTap.create()
      if let why { print("no TAP rows: \(why)") }
      tap = t
      groups.remove("tap")
    }
    defer { tap?.remove() }
    let plan = BenchIOPlan(
      groups: groups, sizeMiB: sizeMiB, consoleKiB: consoleKiB, netMiB: netMiB, reads: reads)
    var tapPlan = BenchIOPlan(
      groups: ["tap"], sizeMiB: sizeMiB, consoleKiB: consoleKiB, netMiB: netMiB, reads: reads)
    tapPlan.tapName = tap?.name
    let plans = (groups.isEmpty ? [] : [plan]) + (tap == nil ? [] : [tapPlan])
    guard !plans.isEmpty else { BenchIO.usageError("--only: nothing left to measure") }
    let work = NSTemporaryDirectory() + "swiftvmm-benchio-\(getpid())"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    var initrds: [[UInt8]] = []
    for (i, p) in plans.enumerated() {
      initrds.append(
        try StandardInitramfs.build(
          guest: guest, initScript: StandardInitramfs.initScript(commands: p.guestScript),
          gzip: false))
      try Data(initrds[i]).write(to: URL(fileURLWithPath: work + "/initrd\(i).cpio"))
    }
    guard let kernel = FileManager.default.contents(atPath: guest.bzImage) else {
      fail("cannot read \(guest.bzImage)", status: .unusableInput)
    }
    let disk = work + "/disk.raw"
    if plan.usesDisk {
      // Sparse: the guest's writes allocate it, as they would a fresh image.
      guard FileManager.default.createFile(atPath: disk, contents: nil),
        truncate(disk, off_t(sizeMiB) << 20) == 0
      else { fail("cannot create \(disk)", status: .cannotCreateOutput) }
    }

    var ours: [[String: BenchIOPhase]] = []
    var theirs: [[String: BenchIOPhase]] = []
    let qemu = chosen.contains("qemu") ? BenchMeasure.qemuPath : nil
    if chosen.contains("qemu") && qemu == nil {
      print("QEMU: qemu-system-x86_64 not installed; SwiftVMM's column only.")
    }
    for r in 0..<repeats {
      // One entry per repeat and VMM: the phases of all its boots.
      var mine: [String: BenchIOPhase] = [:]
      var qemus: [String: BenchIOPhase]? = qemu == nil ? nil : [:]
      for (i, p) in plans.enumerated() {
        let what = p.tapName == nil ? "" : " on TAP"
        if chosen.contains("swiftvmm") {
          print("run \(r + 1)/\(repeats): SwiftVMM \(engineKind.rawValue)\(what) ...")
          mine.merge(
            try runSwiftVMM(
              plan: p, kernel: [UInt8](kernel), name: guest.bzImage, initrd: initrds[i],
              disk: disk, engine: engineKind)
          ) { a, _ in a }
        }
        if let qemu {
          print("run \(r + 1)/\(repeats): QEMU TCG\(what) ...")
          if let q = try runQEMU(
            qemu, plan: p, kernel: guest.bzImage, initrd: work + "/initrd\(i).cpio", disk: disk)
          {
            qemus?.merge(q) { a, _ in a }
          } else {
            qemus = nil
          }
        }
      }
      if chosen.contains("swiftvmm") { ours.append(mine) }
      if let qemus { theirs.append(qemus) }
    }
    let host = plan.usesDisk ? hostDisk(work: work) : [:]
    var shown = plan
    if tap != nil { shown.groups.insert("tap") }
    let report = BenchIOReport(
      plan: shown, ours: ours, qemu: theirs, host: host, engine: engineKind.rawValue)
    print(report.table)
    if let json {
      let data = try JSONSerialization.data(
        withJSONObject: report.json, options: [.prettyPrinted, .sortedKeys])
      OutputFile.write([UInt8](data), to: json, what: "--json")
    }
  }

  // MARK: SwiftVMM

  func runSwiftVMM(
    plan: BenchIOPlan, kernel: [UInt8], name: String, initrd: [UInt8], disk: String,
    engine: EngineKind
  ) throws -> [String: BenchIOPhase] {
    var c = MachineConfig(kernel: kernel, kernelName: name, engine: engine)
    let (sink, source) = try plan.hostEnds()
    c.initrd = initrd
    c.commandLine = plan.commandLine(sink: sink)
    c.memorySize = 512 << 20
    c.cpuid = try CPUIDPolicy.load(nameOrPath: "kvm")
    c.timeout = 3600
    var v = VirtioConfig()
    if plan.groups.contains("console") { v.console = .virtio }
    if plan.usesDisk { v.disks = [DiskSpec(path: disk)] }
    if let tap = plan.tapName {
      v.network = try NetworkSpec.parse("tap=\(tap)")
    } else if let source {
      v.network = try NetworkSpec.parse(
        "user,hostfwd=tcp:127.0.0.1:\(source.port)-:\(BenchIOPlan.guestPort)")
    }
    c.virtio = v
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let recorder = BenchIORecorder()
    let start = DispatchTime.now().uptimeNanoseconds
    let cpu0 = BenchMeasure.processCPUSeconds()
    console.lineObserver = { [unowned m] line in
      guard let mark = BenchIOMarker(line) else { return }
      let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      recorder.mark(
        mark, wall: wall, cpu: BenchMeasure.processCPUSeconds() - cpu0, counters: m.statistics())
      if mark.kind == .begin && BenchIOPlan.receivePhases.contains(mark.phase) { source?.start() }
    }
    let outcome = m.run()
    console.lineObserver = nil
    sink?.stop()
    source?.finish()
    guard outcome == .powerOff, console.capturedText.contains(BenchIOPlan.doneMarker) else {
      fail(
        "SwiftVMM: the guest did not finish (\(outcome)):\n"
          + String(console.capturedText.suffix(1500)), status: .internal)
    }
    recorder.check(sink: sink, source: source, plan: plan, vmm: "SwiftVMM")
    return recorder.phases
  }

  // MARK: QEMU

  /// One QEMU TCG boot with QEMU's virtio devices; its ttyS0 is read live so the markers
  /// are timed as they come. Nil (and a message) when it does not finish.
  func runQEMU(
    _ qemu: String, plan: BenchIOPlan, kernel: String, initrd: String, disk: String
  ) throws -> [String: BenchIOPhase]? {
    let (sink, source) = try plan.hostEnds()
    var args = BenchMeasure.qemuArguments(
      kernel: kernel, cmdline: plan.commandLine(sink: sink), memoryMiB: 512)
    args += ["-initrd", initrd, "-nodefaults", "-no-user-config"]
    if plan.groups.contains("console") {
      args += [
        "-device", "virtio-serial-pci", "-chardev", "file,id=hvc,path=/dev/null", "-device",
        "virtconsole,chardev=hvc",
      ]
    }
    if plan.usesDisk {
      args += ["-drive", "file=\(disk),format=raw,if=virtio,cache=writeback"]
    }
    if let tap = plan.tapName {
      args += [
        "-netdev", "tap,id=n0,ifname=\(tap),script=no,downscript=no", "-device",
        "virtio-net-pci,netdev=n0",
      ]
    } else if let source {
      args += [
        "-nic",
        "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:\(source.port)-:\(BenchIOPlan.guestPort)",
      ]
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: qemu)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let recorder = BenchIORecorder()
    let start = DispatchTime.now().uptimeNanoseconds
    do { try p.run() } catch {
      print("QEMU TCG: cannot start: \(error)")
      return nil
    }
    let pid = p.processIdentifier
    var pending: [UInt8] = []
    var tail: [UInt8] = []
    let reader = pipe.fileHandleForReading
    while true {
      let chunk = reader.availableData
      if chunk.isEmpty { break }
      for b in chunk {
        if b != 0x0A {
          // A marker is short; long lines are console payload and need not be kept.
          if pending.count < 256 { pending.append(b) }
          continue
        }
        if let mark = BenchIOMarker(Substring(decoding: pending, as: UTF8.self)) {
          let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
          recorder.mark(mark, wall: wall, cpu: BenchIO.cpuSeconds(of: pid) ?? 0, counters: [:])
          if mark.kind == .begin && BenchIOPlan.receivePhases.contains(mark.phase) {
            source?.start()
          }
        }
        tail += pending + [0x0A]
        if tail.count > 4096 { tail.removeFirst(tail.count - 4096) }
        pending.removeAll(keepingCapacity: true)
      }
    }
    p.waitUntilExit()
    let out = String(decoding: tail, as: UTF8.self)
    sink?.stop()
    source?.finish()
    guard out.contains(BenchIOPlan.doneMarker) else {
      print("QEMU TCG: the guest did not finish:\n" + String(out.suffix(1500)))
      return nil
    }
    recorder.check(sink: sink, source: source, plan: plan, vmm: "QEMU")
    return recorder.phases
  }

  /// A live process's user + system CPU seconds, from /proc/PID/stat.
  static func cpuSeconds(of pid: Int32) -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = s.lastIndex(of: ")")
    else { return nil }
    // Fields after the command name start at field 3; utime and stime are 14 and 15.
    let f = s[s.index(after: close)...].split(separator: " ")
    guard f.count > 13, let u = Double(f[11]), let k = Double(f[12]) else { return nil }
    return (u + k) / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  // MARK: Host

  /// The same sequential dd on the host's file system, for the "near-native" column:
  /// write with fsync, read back with O_DIRECT (dropping the host's caches needs root
  /// and would slow everyone else's work).
  func hostDisk(work: String) -> [String: BenchIOPhase] {
    let file = work + "/host.raw"
    defer { unlink(file) }
    var out: [String: BenchIOPhase] = [:]
    let runs: [(String, [String])] = [
      ("blkwrite", ["if=/dev/zero", "of=\(file)", "bs=1M", "count=\(sizeMiB)", "conv=fsync"]),
      ("blkread", ["if=\(file)", "of=/dev/null", "bs=1M", "count=\(sizeMiB)", "iflag=direct"]),
    ]
    for (phase, args) in runs {
      let t0 = DispatchTime.now().uptimeNanoseconds
      guard let s = try? BenchMeasure.runChild("/bin/dd", args, okStatus: 0), s.ok else {
        print("host dd \(phase) failed")
        continue
      }
      let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
      out[phase] = BenchIOPhase(wall: wall, cpu: s.cpuSeconds, counters: [:])
    }
    return out
  }
}

/// What the guest does, in order, and the figures each phase yields.
struct BenchIOPlan {
  var groups: Set<String>
  var sizeMiB: Int
  var consoleKiB: Int
  var netMiB: Int
  var reads: Int
  /// The TAP device of the "tap" group's boot.
  var tapName: String?

  static let guestPort = 5001
  /// Phases in which the host sends to the guest (its source starts at their marker).
  static let receivePhases: Set<String> = ["netrx", "taprx"]
  static let doneMarker = "BENCHIO done"

  var usesDisk: Bool { groups.contains("blk") }

  /// The host ends of the network rows (nil without `net` or `tap`); one pair per boot.
  func hostEnds() throws -> (HostSink?, HostSource?) {
    let bytes = netMiB << 20
    if groups.contains("tap") {
      guard let sink = HostSink(expecting: bytes, host: BenchTap.hostAddress) else {
        throw BenchError.cannotStart("a TCP socket on \(BenchTap.hostAddress) for the TAP rows")
      }
      return (sink, HostSource(bytes: bytes, host: BenchTap.guestAddress, port: Self.guestPort))
    }
    guard groups.contains("net") else { return (nil, nil) }
    guard let sink = HostSink(expecting: bytes), let source = HostSource(bytes: bytes)
    else { throw BenchError.cannotStart("a loopback TCP socket for the network rows") }
    return (sink, source)
  }

  /// The kernel command line; the guest finds the host sink's port in it.
  func commandLine(sink: HostSink?) -> String {
    "console=ttyS0 panic=-1 quiet" + (sink.map { " benchio.sink=\($0.port)" } ?? "")
  }

  /// Lines of `seq` written to ttyS0 line by line: about as many bytes as the
  /// `--console-kib` phase.
  var consoleLines: Int { max(1, consoleKiB * 1024 / 7) }

  /// The init commands. Markers go to the kernel console (ttyS0); payloads do not.
  var guestScript: String {
    var s = "mark() { echo; echo \"BENCHIO $1 $2\"; }\n"
    if groups.contains("console") {
      for (phase, dev) in [("uart", "/dev/ttyS0"), ("hvc", "/dev/hvc0")] {
        s += "mark begin \(phase)\n"
        s += "dd if=/dev/zero bs=1024 count=\(consoleKiB) 2>/dev/null | tr '\\0' x > \(dev)\n"
        s += "mark end \(phase)\n"
      }
      // What a shell user sees: one write(2) per line, each a burst of a few bytes.
      s += "mark begin uartlines\nseq 1 \(consoleLines) > /dev/ttyS0\nmark end uartlines\n"
      // The same lines into a pipe: what they cost without a console (issue 8's baseline).
      s += "mark begin uartlinesbase\nseq 1 \(consoleLines) | wc -l > /dev/null\n"
      s += "mark end uartlinesbase\n"
    }
    if groups.contains("blk") {
      let blocks = sizeMiB * 256
      s += """
        mark begin blkwrite
        dd if=/dev/zero of=/dev/vda bs=1M count=\(sizeMiB) conv=fsync 2>/dev/null
        mark end blkwrite
        echo 3 > /proc/sys/vm/drop_caches
        mark begin blkread
        dd if=/dev/vda of=/dev/null bs=1M count=\(sizeMiB) 2>/dev/null
        mark end blkread
        mark begin iopsbase
        i=0; while [ $i -lt \(reads) ]; do dd if=/dev/vda of=/dev/null bs=4096 count=0 skip=$(( (i * 7919) % \(blocks) )) iflag=direct 2>/dev/null; i=$((i+1)); done
        mark end iopsbase
        mark begin iops
        i=0; while [ $i -lt \(reads) ]; do dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$(( (i * 7919) % \(blocks) )) iflag=direct 2>/dev/null; i=$((i+1)); done
        mark end iops

        """
    }
    // user: 10.0.2.15/24 behind the slirp gateway 10.0.2.2, as DHCP would give it.
    for (group, prefix, me, host) in [
      ("net", "net", "10.0.2.15", "10.0.2.2"),
      ("tap", "tap", BenchTap.guestAddress, BenchTap.hostAddress),
    ] where groups.contains(group) {
      s += """
        ip link set eth0 up; ip addr add \(me)/24 dev eth0; ip route add default via \(host)
        ping -c 1 -W 5 \(host) >/dev/null 2>&1
        ping -c 20 -q \(host) | sed -n 's|.*= [0-9.]*/\\([0-9.]*\\)/.*|BENCHIO value \(prefix)ping \\1|p'
        mark begin \(prefix)tx
        dd if=/dev/zero bs=65536 count=\(netMiB * 16) 2>/dev/null | nc \(host) $(sed -n 's/.*benchio.sink=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
        mark end \(prefix)tx
        nc -l -p \(BenchIOPlan.guestPort) > /dev/null &
        sleep 1
        mark begin \(prefix)rx
        wait
        mark end \(prefix)rx

        """
    }
    s += "echo \(BenchIOPlan.doneMarker)\n"
    return s
  }
}

/// `BENCHIO begin PHASE` / `BENCHIO end PHASE` / `BENCHIO value NAME NUMBER` (a figure the
/// guest measured itself, such as a ping round trip), anywhere in a line.
struct BenchIOMarker {
  enum Kind: Equatable {
    case begin, end
    case value(Double)
  }
  var kind: Kind
  var phase: String
  init?(_ line: Substring) {
    guard let r = line.range(of: "BENCHIO ") else { return nil }
    // The tty ends lines with CR LF.
    let f = line[r.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\r" })
    switch (f.first, f.count) {
    case ("begin", 2): kind = .begin
    case ("end", 2): kind = .end
    case ("value", 3):
      guard let v = Double(f[2]), v.isFinite else { return nil }
      kind = .value(v)
    default: return nil
    }
    phase = String(f[1])
  }
}

/// One phase: host wall and CPU seconds, and the counter differences (SwiftVMM only).
struct BenchIOPhase {
  var wall: Double
  var cpu: Double
  var counters: [String: UInt64]
  /// A `BENCHIO value` figure (ping: milliseconds).
  var value: Double? = nil
}

/// Collects phases from marker lines; begin and end must pair.
final class BenchIORecorder {
  private var open: [String: (Double, Double, [String: UInt64])] = [:]
  private(set) var phases: [String: BenchIOPhase] = [:]

  func mark(_ m: BenchIOMarker, wall: Double, cpu: Double, counters: [String: UInt64]) {
    switch m.kind {
    case .begin:
      open[m.phase] = (wall, cpu, counters)
    case .end:
      guard let (w, c, k) = open.removeValue(forKey: m.phase) else { return }
      var d: [String: UInt64] = [:]
      for (name, v) in counters { d[name] = v &- (k[name] ?? 0) }
      phases[m.phase] = BenchIOPhase(wall: wall - w, cpu: cpu - c, counters: d)
    case .value(let v):
      phases[m.phase] = BenchIOPhase(wall: 0, cpu: 0, counters: [:], value: v)
    }
  }

  /// Drops network phases whose bytes did not all arrive: a throughput of a short
  /// transfer would be wrong, so the row says so instead.
  func check(sink: HostSink?, source: HostSource?, plan: BenchIOPlan, vmm: String) {
    let want = plan.netMiB << 20
    let prefix = plan.groups.contains("tap") ? "tap" : "net"
    if let sink, sink.received < want {
      print("\(vmm): guest->host received \(sink.received) of \(want) bytes; no \(prefix)tx figure")
      phases[prefix + "tx"] = nil
    }
    if let source, source.sent < want {
      print("\(vmm): host->guest sent \(source.sent) of \(want) bytes; no \(prefix)rx figure")
      phases[prefix + "rx"] = nil
    }
  }
}

/// The medians of every run as one table (and its JSON).
struct BenchIOReport {
  var plan: BenchIOPlan
  var ours: [[String: BenchIOPhase]]
  var qemu: [[String: BenchIOPhase]]
  var host: [String: BenchIOPhase]
  /// SwiftVMM's engine in these runs.
  var engine: String

  private static func median(
    _ runs: [[String: BenchIOPhase]], _ phase: String, _ f: (BenchIOPhase) -> Double?
  ) -> Double? {
    let v = runs.compactMap { $0[phase].flatMap(f) }
    return v.isEmpty ? nil : BenchStats.median(v)
  }

  /// Rows of (label, SwiftVMM, QEMU, host) figures; nil is "-".
  var rows: [(String, Double?, Double?, Double?)] {
    var r: [(String, Double?, Double?, Double?)] = []
    func both(_ label: String, _ phase: String, _ f: @escaping (BenchIOPhase) -> Double?) {
      r.append((label, Self.median(ours, phase, f), Self.median(qemu, phase, f), nil))
    }
    if plan.groups.contains("console") {
      let kib = Double(plan.consoleKiB)
      for (phase, dev, key) in [
        ("uart", "16550A ttyS0", "uart.bytes_transmitted"),
        ("hvc", "virtio-console hvc0", "virtio_console.bytes_transmitted"),
      ] {
        both("\(dev): bytes per exit", phase) { p in
          guard let b = p.counters[key], let e = p.counters["exits.total"], e > 0 else {
            return nil
          }
          return Double(b) / Double(e)
        }
        both("\(dev): exits per KiB", phase) { p in
          p.counters["exits.total"].map { Double($0) / kib }
        }
        // Where an exit's time goes: guest instructions between exits, and how many
        // of them ran as translated code.
        both("\(dev): guest instructions per exit", phase) { p in
          guard let n = p.counters["instructions"], let e = p.counters["exits.total"], e > 0
          else { return nil }
          return Double(n) / Double(e)
        }
        both("\(dev): % instructions translated", phase) { p in
          guard let n = p.counters["instructions"], n > 0,
            let t = p.counters["translator.block_instructions"]
          else { return nil }
          return 100 * Double(t) / Double(n)
        }
        both("\(dev): \(plan.consoleKiB) KiB wall s", phase) { $0.wall }
        both("\(dev): \(plan.consoleKiB) KiB CPU s", phase) { $0.cpu }
      }
      let lines = "16550A ttyS0: seq 1 \(plan.consoleLines), line by line"
      both("\(lines): exits per line", "uartlines") { p in
        p.counters["exits.total"].map { Double($0) / Double(plan.consoleLines) }
      }
      both("\(lines): wall s", "uartlines") { $0.wall }
      both("\(lines): CPU s", "uartlines") { $0.cpu }
      both("seq 1 \(plan.consoleLines) | wc -l: CPU s", "uartlinesbase") { $0.cpu }
      r.append(
        (
          "\(lines): CPU s beyond the pipe",
          Self.consoleShare(ours), Self.consoleShare(qemu), nil
        ))
    }
    if plan.groups.contains("blk") {
      let mib = Double(plan.sizeMiB)
      for (phase, what) in [("blkwrite", "write (fsync)"), ("blkread", "read (cold)")] {
        let f = { (p: BenchIOPhase) -> Double? in p.wall > 0 ? mib / p.wall : nil }
        r.append(
          (
            "virtio-blk seq \(what) MiB/s", Self.median(ours, phase, f),
            Self.median(qemu, phase, f),
            host[phase].flatMap(f)
          ))
      }
      let iops = { (runs: [[String: BenchIOPhase]]) -> Double? in
        let v = runs.compactMap { run -> Double? in
          guard let a = run["iops"], let b = run["iopsbase"], a.wall > b.wall else { return nil }
          return Double(self.plan.reads) / (a.wall - b.wall)
        }
        return v.isEmpty ? nil : BenchStats.median(v)
      }
      r.append(("virtio-blk 4 KiB random read IOPS", iops(ours), iops(qemu), nil))
      both("  (\(plan.reads) dd processes, s)", "iopsbase") { $0.wall }
    }
    for (group, prefix, label) in [("net", "net", "net user"), ("tap", "tap", "net TAP")]
    where plan.groups.contains(group) {
      let mib = Double(plan.netMiB)
      both("\(label): ping RTT ms", prefix + "ping") { $0.value }
      both("\(label): TCP guest->host MiB/s", prefix + "tx") { $0.wall > 0 ? mib / $0.wall : nil }
      both("\(label): TCP host->guest MiB/s", prefix + "rx") { $0.wall > 0 ? mib / $0.wall : nil }
    }
    return r
  }

  /// Median CPU seconds of the line-by-line console phase minus the same lines into a
  /// pipe: what the console itself costs.
  static func consoleShare(_ runs: [[String: BenchIOPhase]]) -> Double? {
    median(runs, "uartlines") { $0.cpu }.flatMap { a in
      median(runs, "uartlinesbase") { $0.cpu }.map { a - $0 }
    }
  }

  /// Wide enough for the longest label plus a space.
  static let labelWidth = 64

  var table: String {
    let cell = { (v: Double?) -> String in
      guard let v else { return "-" }
      return BenchSupport.fmt(v, v >= 100 ? 0 : v >= 10 ? 1 : 2)
    }
    var s =
      "\n" + BenchSupport.pad("", Self.labelWidth) + BenchSupport.pad("SwiftVMM", 12)
      + BenchSupport.pad("QEMU TCG", 12) + "host\n"
    for (label, a, b, c) in rows {
      s +=
        BenchSupport.pad(label, Self.labelWidth) + BenchSupport.pad(cell(a), 12)
        + BenchSupport.pad(cell(b), 12)
        + cell(c) + "\n"
    }
    s +=
      "(medians of \(ours.count) SwiftVMM and \(qemu.count) QEMU boots; SwiftVMM: \(engine) engine;"
    s += " exits are all exits in the phase; ping: busybox ping's average of 20)"
    return s
  }

  var json: [String: Any] {
    var doc: [String: Any] = [
      "size_mib": plan.sizeMiB, "console_kib": plan.consoleKiB, "net_mib": plan.netMiB,
      "reads": plan.reads, "swiftvmm_runs": ours.count, "qemu_runs": qemu.count,
      "swiftvmm_engine": engine,
    ]
    doc["rows"] = rows.map { row -> [String: Any] in
      var o: [String: Any] = ["row": row.0]
      if let v = row.1 { o["swiftvmm"] = v }
      if let v = row.2 { o["qemu"] = v }
      if let v = row.3 { o["host"] = v }
      return o
    }
    return doc
  }
}
