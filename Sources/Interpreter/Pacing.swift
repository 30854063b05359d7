extension InterpreterCPU {
  /// Instructions retired so far; the VMM's instruction-count clock reads it.
  public var instructionsRetired: UInt64 { instructions }
}
