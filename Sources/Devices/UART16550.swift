/// A 16550A UART: 16-byte receive FIFO, the IIR priority scheme, line and
/// modem status, loopback, and its interrupt output gated by MCR.OUT2 as on a PC.
/// Transmitted bytes go to `output`; the VMM feeds received bytes with `receive`.
public final class UART16550: PortIODevice {
  public static let fifoSize = 16

  private let output: (UInt8) -> Void
  let irq: IRQLine?

  // Registers.
  var ier: UInt8 = 0
  var lcr: UInt8 = 0x03
  var mcr: UInt8 = 0
  var scr: UInt8 = 0
  var dll: UInt8 = 0x0C  // 9600 baud
  var dlm: UInt8 = 0
  var fifoEnabled = false
  var triggerLevel = 1
  var overrun = false
  var msrDeltas: UInt8 = 0
  /// THR-empty interrupt is pending until IIR reports it or THR is written.
  var thrEmptyPending = false

  var rxFIFO: [UInt8] = []
  /// Bytes from the host not yet in the FIFO: flow control instead of overruns.
  var hostBacklog: [UInt8] = []
  var backlogHead = 0
  /// Bytes the guest transmitted to the host (for `--stats` and `bench io`).
  public internal(set) var bytesTransmitted: UInt64 = 0

  public init(irq: IRQLine? = nil, output: @escaping (UInt8) -> Void) {
    self.irq = irq
    self.output = output
  }

  private enum IER {
    static let rxData: UInt8 = 1 << 0
    static let thrEmpty: UInt8 = 1 << 1
    static let lineStatus: UInt8 = 1 << 2
    static let modemStatus: UInt8 = 1 << 3
  }
  private enum LSR {
    static let dataReady: UInt8 = 1 << 0
    static let overrun: UInt8 = 1 << 1
    static let thrEmpty: UInt8 = 1 << 5
    static let transmitterEmpty: UInt8 = 1 << 6
  }
  private enum MCR {
    static let dtr: UInt8 = 1 << 0
    static let rts: UInt8 = 1 << 1
    static let out1: UInt8 = 1 << 2
    static let out2: UInt8 = 1 << 3
    static let loop: UInt8 = 1 << 4
  }
  private var dlab: Bool { lcr & 0x80 != 0 }
  private var loopback: Bool { mcr & MCR.loop != 0 }

  /// How many host bytes may wait for the FIFO. The host stops handing over
  /// input when this is full (back-pressure), so a guest that never reads
  /// cannot make the VMM's memory grow.
  public static let hostBacklogLimit = 4096

  /// Bytes from the host console. Takes what fits (FIFO plus backlog) and
  /// returns how many it took; the caller keeps the rest until `hostRoom` is
  /// positive again. None are dropped.
  @discardableResult
  public func receive(_ bytes: some Collection<UInt8>) -> Int {
    let n = min(bytes.count, hostRoom)
    hostBacklog.append(contentsOf: bytes.prefix(n))
    refill()
    updateInterrupt()
    return n
  }

  /// How many more host bytes `receive` would take now.
  public var hostRoom: Int { UART16550.hostBacklogLimit - (hostBacklog.count - backlogHead) }

  /// True when host input is still waiting for room in the FIFO.
  public var hasBacklog: Bool { backlogHead < hostBacklog.count }

  private func refill() {
    while rxFIFO.count < (fifoEnabled ? UART16550.fifoSize : 1), backlogHead < hostBacklog.count {
      rxFIFO.append(hostBacklog[backlogHead])
      backlogHead += 1
    }
    if backlogHead == hostBacklog.count {
      hostBacklog.removeAll(keepingCapacity: true)
      backlogHead = 0
    } else if backlogHead >= UART16550.hostBacklogLimit {
      hostBacklog.removeFirst(backlogHead)  // keep storage within twice the limit
      backlogHead = 0
    }
  }

  private var lsr: UInt8 {
    var v = LSR.thrEmpty | LSR.transmitterEmpty
    if !rxFIFO.isEmpty { v |= LSR.dataReady }
    if overrun { v |= LSR.overrun }
    return v
  }

  private var msr: UInt8 {
    var lines: UInt8
    if loopback {
      lines = 0
      if mcr & MCR.rts != 0 { lines |= 0x10 }  // CTS
      if mcr & MCR.dtr != 0 { lines |= 0x20 }  // DSR
      if mcr & MCR.out1 != 0 { lines |= 0x40 }  // RI
      if mcr & MCR.out2 != 0 { lines |= 0x80 }  // DCD
    } else {
      lines = 0xB0  // CTS, DSR, DCD asserted: a console is always there
    }
    return lines | msrDeltas
  }

  /// Interrupt identification, highest priority first.
  private var pendingInterrupt: UInt8? {
    if ier & IER.lineStatus != 0 && overrun { return 0x06 }
    if ier & IER.rxData != 0 && !rxFIFO.isEmpty {
      // Below the trigger level the real chip raises a character timeout
      // after 4 idle character times; the guest sees data at once here.
      return rxFIFO.count >= triggerLevel || !fifoEnabled ? 0x04 : 0x0C
    }
    if ier & IER.thrEmpty != 0 && thrEmptyPending { return 0x02 }
    if ier & IER.modemStatus != 0 && msrDeltas != 0 { return 0x00 }
    return nil
  }

  private func updateInterrupt() {
    // OUT2 gates the IRQ line on PC hardware; loopback disconnects it.
    irq?.set(pendingInterrupt != nil && mcr & MCR.out2 != 0 && !loopback)
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    defer { updateInterrupt() }
    switch offset {
    case 0:
      if dlab { return UInt32(dll) }
      guard !rxFIFO.isEmpty else { return 0 }
      let b = rxFIFO.removeFirst()
      refill()
      return UInt32(b)
    case 1:
      return UInt32(dlab ? dlm : ier)
    case 2:
      var iir: UInt8 = 0x01
      if let p = pendingInterrupt {
        iir = p
        if p == 0x02 { thrEmptyPending = false }
      }
      if fifoEnabled { iir |= 0xC0 }
      return UInt32(iir)
    case 3: return UInt32(lcr)
    case 4: return UInt32(mcr)
    case 5:
      let v = lsr
      overrun = false
      return UInt32(v)
    case 6:
      let v = msr
      msrDeltas = 0
      return UInt32(v)
    case 7: return UInt32(scr)
    default: return 0xFF
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    let v = UInt8(truncatingIfNeeded: value)
    defer { updateInterrupt() }
    switch offset {
    case 0:
      if dlab {
        dll = v
        return
      }
      if loopback {
        if rxFIFO.count < (fifoEnabled ? UART16550.fifoSize : 1) {
          rxFIFO.append(v)
        } else {
          overrun = true
        }
      } else {
        bytesTransmitted &+= 1
        output(v)
      }
      // The byte leaves at once, as in QEMU: no transmit time, so no timer. THRE drops
      // and rises again within the write, an edge for an edge-triggered pin even while
      // the interrupt is in service, so a driver that leaves its handler with bytes
      // still queued (Linux's 8250 after its pass limit) gets another interrupt.
      thrEmptyPending = false
      updateInterrupt()
      thrEmptyPending = true
    case 1:
      if dlab {
        dlm = v
        return
      }
      let enablingTHRE = ier & IER.thrEmpty == 0 && v & IER.thrEmpty != 0
      ier = v & 0x0F
      if enablingTHRE { thrEmptyPending = true }
    case 2:
      let enable = v & 1 != 0
      if enable != fifoEnabled {
        rxFIFO.removeAll()
        fifoEnabled = enable
      }
      if v & 0x02 != 0 { rxFIFO.removeAll() }
      triggerLevel = [1, 4, 8, 14][Int(v >> 6)]
      refill()
    case 3: lcr = v
    case 4:
      let old = msr & 0xF0
      mcr = v & 0x1F
      let new = msr & 0xF0
      if loopback, old != new {
        // Delta bits: CTS, DSR changed; trailing edge of RI; DCD changed.
        let changed = old ^ new
        if changed & 0x10 != 0 { msrDeltas |= 0x01 }
        if changed & 0x20 != 0 { msrDeltas |= 0x02 }
        if old & 0x40 != 0 && new & 0x40 == 0 { msrDeltas |= 0x04 }
        if changed & 0x80 != 0 { msrDeltas |= 0x08 }
      }
    case 7: scr = v
    default: break
    }
  }
}
