import KVM

/// What the KVM engine refuses on this host, with the reason, instead of
/// starting a guest that would only hang.
public enum KVMPlatformLimits {
  /// Measured here: under KVM-PVM a Debian 6.1 bzImage makes 9 port exits and
  /// then runs 60 s inside its decompressor without another exit (the
  /// interpreter gets through it in seconds). The platform is not the problem:
  /// no interrupt is enabled yet at that point.
  public static let linuxOnPVM =
    "--engine kvm cannot boot Linux on KVM-PVM: PVM emulates the guest and stock Linux does not get past its bzImage decompressor (no VM exit for 60 s); use --engine interpreter"

  /// The refusal for a Linux kernel on `engine`, or nil when it may run.
  public static func linuxRefusal(engine: EngineKind, host: () -> KVMHost = { KVMHost.probe() })
    -> String?
  {
    guard engine == .kvm else { return nil }
    let h = host()
    return h.isUsable && h.kind == .pvm ? linuxOnPVM : nil
  }
}
