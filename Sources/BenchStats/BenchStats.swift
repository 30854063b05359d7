/// Statistics for benchmarks on a shared, noisy machine: medians and a spread that one
/// wild run does not sway, and the per-unit cost of a workload from runs at two sizes.
/// Pure arithmetic, so it is unit-tested apart from the commands that print it.
public enum BenchStats {
  /// The median; 0 for no values.
  public static func median(_ v: [Double]) -> Double {
    guard !v.isEmpty else { return 0 }
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
  }

  /// The median absolute deviation from the median: how far a typical run lies from the
  /// median. Unlike the range it does not grow with every extra run, so more runs can
  /// settle it.
  public static func medianAbsoluteDeviation(_ v: [Double]) -> Double {
    let m = median(v)
    return median(v.map { abs($0 - m) })
  }
}

/// Repeated measurements of one thing (a boot's CPU seconds, say).
public struct BenchSummary {
  public var median: Double
  /// Median absolute deviation from the median.
  public var spread: Double
  public var min: Double
  public var max: Double
  public var count: Int

  public init(_ v: [Double]) {
    median = BenchStats.median(v)
    spread = BenchStats.medianAbsoluteDeviation(v)
    min = v.min() ?? 0
    max = v.max() ?? 0
    count = v.count
  }

  /// The spread as a fraction of the median (infinite when the median is not positive).
  public var relativeSpread: Double { median > 0 ? spread / median : .infinity }
}

/// Per-unit cost of a workload on one engine, from repeated pairs of runs at two sizes.
/// Each pair is run back to back, so its difference (large - small) cancels the engine's
/// start-up and the workload's set-up, and shares whatever load the machine had then;
/// the cost is the median of the pairs' differences over the extra units.
public struct UnitCost {
  public var secondsPerUnit: Double
  /// Median small run minus its units' cost: start-up plus set-up.
  public var startupSeconds: Double
  /// Median of the per-pair differences.
  public var deltaSeconds: Double
  /// Median absolute deviation of the per-pair differences.
  public var spreadSeconds: Double
  public var pairs: Int

  /// A difference below this many CPU seconds is too short to mean anything (clock
  /// granularity, scheduler noise).
  public static let minimumDelta = 0.05
  /// A figure whose spread is above this fraction of its difference is not printed.
  public static let maximumRelativeSpread = 0.25
  /// Below this fraction more pairs would not change the figure much: stop adding them.
  public static let settledRelativeSpread = 0.10

  /// `small[i]` and `large[i]` are the i-th pair (the shorter array sets the count).
  public init(small: [Double], large: [Double], smallUnits: UInt64, largeUnits: UInt64) {
    precondition(largeUnits > smallUnits, "the large run must do more units")
    let n = Swift.min(small.count, large.count)
    let d = (0..<n).map { large[$0] - small[$0] }
    pairs = n
    deltaSeconds = BenchStats.median(d)
    spreadSeconds = BenchStats.medianAbsoluteDeviation(d)
    secondsPerUnit = deltaSeconds / Double(largeUnits - smallUnits)
    startupSeconds = BenchStats.median(Array(small.prefix(n))) - secondsPerUnit * Double(smallUnits)
  }

  public var relativeSpread: Double { deltaSeconds > 0 ? spreadSeconds / deltaSeconds : .infinity }

  /// True when the difference stands clear of the run-to-run noise, so the figure means something.
  public var isMeasurement: Bool {
    pairs >= 1 && deltaSeconds >= Self.minimumDelta
      && relativeSpread <= Self.maximumRelativeSpread
  }

  /// True when more pairs are not worth their time.
  public var isSettled: Bool { isMeasurement && relativeSpread <= Self.settledRelativeSpread }
}
