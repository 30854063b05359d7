import Devices

extension PCPlatform {
  /// KVM_HC_SEND_IPI, the hypercall number Linux's and kvm-unit-tests' PV IPIs use.
  static let kvmSendIPI: UInt64 = 10

  /// Claims the platform's hypercalls: KVM's paravirtual IPI (RBX, RCX: the
  /// destination bitmap; RDX: its lowest APIC ID; RSI: the ICR low word).
  func registerHypercalls(in table: HypercallTable) throws {
    try table.register(Self.kvmSendIPI, owner: "PV IPI") { [weak self] _, a in
      guard let self, a.count >= 4 else { return HypercallTable.enosys }
      return self.apicBus.sendParavirtualIPI(low: a[0], high: a[1], minID: a[2], icr: a[3])
    }
  }
}
