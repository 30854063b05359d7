import Logging

/// IA32_APIC_BASE can move a CPU's APIC page (kvm-unit-tests' apic "relocate
/// apic"). The bus keeps its window at the base it was registered at and maps
/// one more at every other base some APIC uses; an access through a window
/// reaches the current vCPU's APIC only when that APIC's page is there, and
/// otherwise reads as all ones, like an address nothing decodes.
final class RelocatedAPICWindow: MMIODevice {
  let base: UInt64
  unowned let bus: APICBus

  init(base: UInt64, bus: APICBus) {
    self.base = base
    self.bus = bus
  }

  func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    bus.read(window: base, offset: offset, size: size)
  }

  func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    bus.write(window: base, offset: offset, size: size, value: value)
  }
}

extension APICBus {
  func read(window: UInt64, offset: UInt64, size: Int) -> UInt64 {
    let a = apics[current]
    guard a.page == window else { return allOnes(size) }
    return a.mmioRead(offset: offset, size: size)
  }

  func write(window: UInt64, offset: UInt64, size: Int, value: UInt64) {
    let a = apics[current]
    guard a.page == window else { return }
    a.mmioWrite(offset: offset, size: size, value: value)
  }

  /// An APIC's base moved (or a snapshot restored one): map a window at each base
  /// in use, drop the ones nobody uses. A base that overlaps another device stays
  /// unmapped (logged once).
  func apicBaseChanged() {
    guard let mmio else { return }
    let wanted = Set(apics.map(\.page)).subtracting([mappedBase])
    for (b, w) in relocatedWindows where !wanted.contains(b) {
      mmio.unregister(w)
      relocatedWindows[b] = nil
    }
    for b in wanted where relocatedWindows[b] == nil {
      let w = RelocatedAPICWindow(base: b, bus: self)
      do {
        try mmio.register(w, base: b, size: LocalAPIC.size, name: "local APIC (relocated)")
        relocatedWindows[b] = w
      } catch {
        guard !loggedRelocationConflict else { continue }
        loggedRelocationConflict = true
        Logger(label: "swiftvmm.lapic").warning(
          "local APIC moved to 0x\(String(b, radix: 16)), which is taken: \(error)")
      }
    }
  }
}
