extension APICBus {
  /// KVM's paravirtual IPI (hypercall KVM_HC_SEND_IPI): the IPI that ICR low word
  /// `icr` describes, to APIC IDs `minID + i` for each bit i of the 128-bit bitmap
  /// (`low`, `high`). Fixed, lowest-priority (delivered as fixed, as KVM does) and
  /// NMI; other modes reach no one. Returns how many APICs it reached, KVM's answer.
  public func sendParavirtualIPI(low: UInt64, high: UInt64, minID: UInt64, icr: UInt64) -> UInt64 {
    let mode = (icr >> 8) & 7
    guard mode == 0 || mode == 1 || mode == 4 else { return 0 }
    var reached: UInt64 = 0
    for a in apics {
      let id = UInt64(a.apicID)
      guard id >= minID, id - minID < 128 else { continue }
      let bit = id - minID
      guard (bit < 64 ? low : high) >> (bit & 63) & 1 != 0 else { continue }
      if mode == 4 {
        a.latchNMI()
      } else {
        a.deliver(vector: UInt8(truncatingIfNeeded: icr), levelTriggered: false)
      }
      reached += 1
    }
    sentIPIs &+= reached
    return reached
  }
}
