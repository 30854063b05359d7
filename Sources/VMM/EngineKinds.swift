extension EngineKind {
  /// True for the engines built on InterpreterCPU (its soft MMU, devices and clock).
  public var interpretsInstructions: Bool { self != .kvm }
}
